"""Reference data below every other layer: the price catalog (built-in prices.toml plus the
user's price files), which the host's instance detection, the runner and the analyser all read."""
