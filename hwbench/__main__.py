from hwbench.cli import main

main()
