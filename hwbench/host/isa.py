"""Native or emulated: whether this CPU's instruction set runs a precision in hardware.

A precision the hardware lacks still runs: the runtime emulates it in software or upcasts
it to fp32, and it is then slower than fp32 (torch bf16 autocast on an AVX2-only Zen 3 ran
ResNet-50 about 8x slower than fp32). Such a point measures the emulation, not the format,
so the sweep skips it unless asked (SweepConfig.allow_emulated) and every record says which
it was (precision_native, precision_note).

The rule is a pure function of (precision, CPU flags, machine), so it is tested on the flag
sets of machines that are not this one. The flags are the Linux /proc/cpuinfo names
(hwbench.host.fingerprint.ISA_FLAGS). Facts behind the rule:
- x86 bf16 arithmetic: AVX512_BF16 (VDPBF16PS) and AMX-BF16; AVX-NE-CONVERT converts
  bf16/fp16 to and from fp32 in hardware, which oneDNN's avx2_vnni_2 ISA uses for its bf16
  and fp16 kernels (oneDNN developer guide, enum dnnl_cpu_isa_t). fp16 arithmetic:
  AVX512_FP16 and AMX-FP16; F16C only converts. int8: any SIMD unit multiplies integers,
  but only VNNI (AVX512_VNNI, AVX-VNNI, AVX-VNNI-INT8) or AMX-INT8 fuse the u8 x s8 dot
  product; without them kernels use VPMADDUBSW, whose 16-bit intermediate sums can saturate.
- aarch64 hwcaps (kernel docs, arch/arm64/elf_hwcaps): bf16 (BFDOT/BFMMLA), fphp/asimdhp
  (fp16 scalar/vector arithmetic), asimddp (SDOT/UDOT), i8mm (SMMLA).
Caveat: Linux lists amx_fp16 with no /proc/cpuinfo name and keeps avx_ne_convert and
avx_vnni_int8 in a KVM-only leaf, so on many kernels cpuinfo cannot show them; a runtime
that reads CPUID itself (torch) adds them (device_adapters/pytorch.py).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Iterable

from hwbench.host import fingerprint


@dataclass(frozen=True)
class PrecisionSupport:
    """Whether a device runs a precision natively: True, False (emulated/upcast) or None (unknown)."""

    native: bool | None
    note: str
    caveat: str = ""  # a few words shown beside the label, e.g. "no VNNI" (native but on slower kernels)

    @property
    def label(self) -> str:
        """'native', 'emulated' or 'unknown', with the caveat in brackets when there is one."""
        word = {True: "native", False: "emulated"}.get(self.native, "unknown")
        return f"{word} ({self.caveat})" if self.caveat else word


CPU_PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # the precisions a CPU runtime is asked for


def host_flags() -> frozenset[str] | None:
    """This CPU's ISA flags from /proc/cpuinfo (only those hwbench knows), or None where the OS shows none."""
    if not fingerprint.cpu_flags_known():
        return None
    return frozenset(fingerprint.cpu_flags())


def host_machine() -> str:
    return platform.machine()


def host_support(precision: str) -> PrecisionSupport:
    """The ISA rule for this host's CPU."""
    return cpu_support(precision, host_flags(), host_machine())


INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx_vnni_int8")  # fused u8 x s8 dot products into int32


def int8_dot_saturates(machine: str | None = None, flags: Iterable[str] | None = None) -> bool:
    """True on an x86 CPU without VNNI or AMX-INT8: int8 kernels there add u8 x s8 product pairs
    into saturating int16 (VPMADDUBSW). Defaults: this host."""
    if _arch(host_machine() if machine is None else machine) != "x86":
        return False
    present = set(fingerprint.cpu_flags() if flags is None else flags)
    return not present.intersection(INT8_DOT_FLAGS)


def _arch(machine: str) -> str | None:
    m = machine.lower()
    if m in ("x86_64", "amd64", "x64", "i386", "i686"):
        return "x86"
    if m in ("aarch64", "arm64", "armv8l"):
        return "arm"
    return None


def _have(flags: frozenset[str], names: Iterable[str]) -> list[str]:
    return [n for n in names if n in flags]


def cpu_support(precision: str, flags: Iterable[str] | None, machine: str) -> PrecisionSupport:
    """Whether a CPU with `flags` (cpuinfo names; None: not readable) on `machine` runs `precision` natively."""
    arch = _arch(machine)
    if arch is None:
        return PrecisionSupport(None, f"no ISA rule for machine {machine or '?'!r}")
    if precision == "fp32":
        return PrecisionSupport(True, "fp32: native")
    if flags is None:
        return PrecisionSupport(None, f"{precision}: CPU flags not readable on this OS")
    f = frozenset(flags)
    if precision in ("tf32", "fp8"):
        return PrecisionSupport(False, f"{precision} has no CPU arithmetic here: it runs as fp32 or in software")
    rule = _x86 if arch == "x86" else _arm
    return rule(precision, f)


def _x86(precision: str, f: frozenset[str]) -> PrecisionSupport:
    if precision == "bf16":
        have = _have(f, ("amx_bf16", "avx512_bf16", "avx_ne_convert"))
        if not have:
            return PrecisionSupport(False, "bf16 is emulated on this CPU (no avx512_bf16, amx_bf16 or avx_ne_convert)")
        if have == ["avx_ne_convert"]:
            return PrecisionSupport(True, "bf16 native via avx_ne_convert (hardware conversion, fp32 FMA)")
        return PrecisionSupport(True, f"bf16 native ({', '.join(have)})")
    if precision == "fp16":
        have = _have(f, ("amx_fp16", "avx512_fp16"))
        if not have:
            return PrecisionSupport(False, "fp16 is emulated or upcast to fp32 on this CPU (no avx512_fp16 or amx_fp16)")
        return PrecisionSupport(True, f"fp16 native ({', '.join(have)})")
    if precision == "int8":
        have = _have(f, INT8_DOT_FLAGS)
        if have:
            return PrecisionSupport(True, f"int8 native with {', '.join(have)}")
        if "avx2" in f or "avx512bw" in f:
            return PrecisionSupport(True, "int8 without VNNI: AVX2 u8s8 kernels, slower and can saturate", "no VNNI")
        return PrecisionSupport(True, "int8 without VNNI or AVX2: SSE kernels, slow", "no VNNI")
    return PrecisionSupport(None, f"no ISA rule for {precision}")


def _arm(precision: str, f: frozenset[str]) -> PrecisionSupport:
    if precision == "bf16":
        if "bf16" in f:
            return PrecisionSupport(True, "bf16 native (bf16: BFDOT/BFMMLA)")
        return PrecisionSupport(False, "bf16 is emulated on this CPU (no bf16 hwcap)")
    if precision == "fp16":
        have = _have(f, ("asimdhp", "fphp"))
        if "asimdhp" in have:
            return PrecisionSupport(True, f"fp16 native ({', '.join(have)})")
        return PrecisionSupport(False, "fp16 is emulated or upcast to fp32 on this CPU (no asimdhp)")
    if precision == "int8":
        have = _have(f, ("i8mm", "asimddp"))
        if have:
            return PrecisionSupport(True, f"int8 native with {', '.join(have)}")
        return PrecisionSupport(True, "int8 without dot-product instructions (asimddp, i8mm): widening NEON, slower",
                                "no dot product")
    return PrecisionSupport(None, f"no ISA rule for {precision}")
