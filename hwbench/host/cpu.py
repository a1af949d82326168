"""The host CPU's vendor and microarchitecture family, read from /proc/cpuinfo.

Pricing needs to know what kind of processor a run measured: an instance type is only a fair
price for this machine when its CPU is the same kind (an AMD Zen 3 host is not a Sapphire
Rapids c7i). The marketing name is no help in VMs ("AMD EPYC", "Intel(R) Xeon(R) Processor"),
but the CPUID numbers Linux shows are: x86 `vendor_id`, `cpu family`, `model`; aarch64
`CPU implementer` and `CPU part`. Only combinations with a public source are listed below;
anything else is reported as unknown, never guessed from a neighbour.

Sources of the numbers:
- Intel family 6 models: Linux arch/x86/include/asm/intel-family.h
  (INTEL_FAM6_SAPPHIRERAPIDS_X 0x8F, INTEL_FAM6_EMERALDRAPIDS_X 0xCF, INTEL_FAM6_ICELAKE_X 0x6A,
  INTEL_FAM6_GRANITERAPIDS_X 0xAD).
- AMD: the Processor Programming Reference titles name the family/model of each server line,
  e.g. "PPR for AMD Family 19h Model 01h" (EPYC 7003, Milan, Zen 3), "... Family 19h Model 11h"
  (EPYC 9004, Genoa, Zen 4), "... Family 17h Model 31h" (EPYC 7002, Rome, Zen 2); summarised at
  https://en.wikichip.org/wiki/amd/cpuid.
- Arm: the MIDR part numbers of the Neoverse cores (0xd0c N1, 0xd40 V1, 0xd4f V2; implementer
  0x41 = Arm Ltd), as used by EESSI's init/arch_specs/eessi_arch_arm_part.spec to tell AWS
  Graviton2 / Graviton3 apart. The same cores are licensed to others (Ampere Altra is N1,
  NVIDIA Grace is V2), so an Arm core is named as a Graviton only on a host whose DMI vendor
  says it is an EC2 instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

AMAZON_DMI_VENDOR = "Amazon EC2"


@dataclass(frozen=True)
class CpuFamily:
    """One row of the table: which CPUID numbers mean which vendor and microarchitecture."""

    vendor_id: str  # x86 vendor_id, or "arm:0x41" for an aarch64 implementer
    family: int | None  # x86 'cpu family' (decimal as /proc/cpuinfo prints it); None on Arm
    models: tuple[int, ...]  # x86 'model' values, or Arm 'CPU part' values
    vendor: str  # as a price catalog names it: "AMD", "Intel", "Arm"
    name: str  # microarchitecture family: "Zen 3", "Sapphire Rapids", "Neoverse V1"
    graviton: str | None = None  # the AWS name of an Arm core on an EC2 host
    source: str = ""


_INTEL_H = "Linux arch/x86/include/asm/intel-family.h"
_AMD_PPR = "AMD Processor Programming Reference (PPR) for"
_EESSI = "EESSI init/arch_specs/eessi_arch_arm_part.spec (Neoverse MIDR part numbers)"

CPU_FAMILIES: tuple[CpuFamily, ...] = (
    CpuFamily("GenuineIntel", 6, (0x8F,), "Intel", "Sapphire Rapids", source=f"{_INTEL_H}: SAPPHIRERAPIDS_X 0x8F"),
    CpuFamily("GenuineIntel", 6, (0xCF,), "Intel", "Emerald Rapids", source=f"{_INTEL_H}: EMERALDRAPIDS_X 0xCF"),
    CpuFamily("GenuineIntel", 6, (0xAD,), "Intel", "Granite Rapids", source=f"{_INTEL_H}: GRANITERAPIDS_X 0xAD"),
    CpuFamily("GenuineIntel", 6, (0x6A,), "Intel", "Ice Lake", source=f"{_INTEL_H}: ICELAKE_X 0x6A"),
    CpuFamily("AuthenticAMD", 0x17, (0x31,), "AMD", "Zen 2", source=f"{_AMD_PPR} Family 17h Model 31h (EPYC 7002, Rome)"),
    CpuFamily("AuthenticAMD", 0x19, (0x01,), "AMD", "Zen 3", source=f"{_AMD_PPR} Family 19h Model 01h (EPYC 7003, Milan)"),
    CpuFamily("AuthenticAMD", 0x19, (0x11,), "AMD", "Zen 4", source=f"{_AMD_PPR} Family 19h Model 11h (EPYC 9004, Genoa)"),
    CpuFamily("arm:0x41", None, (0xD0C,), "Arm", "Neoverse N1", graviton="Graviton2", source=_EESSI),
    CpuFamily("arm:0x41", None, (0xD40,), "Arm", "Neoverse V1", graviton="Graviton3", source=_EESSI),
    CpuFamily("arm:0x41", None, (0xD4F,), "Arm", "Neoverse V2", graviton="Graviton4", source=_EESSI),
)


@dataclass(frozen=True)
class CpuIdentity:
    """What kind of CPU this is: vendor and family when the table knows it, and the raw numbers."""

    vendor: str | None
    family: str | None
    cpuid: str  # the raw numbers read, e.g. "AuthenticAMD family 25 model 1"
    source: str | None = None

    @property
    def known(self) -> bool:
        return self.vendor is not None and self.family is not None

    @property
    def label(self) -> str:
        return f"{self.vendor} {self.family}" if self.known else f"unknown CPU ({self.cpuid})"


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip(), 0)  # "25", "0x41", "0xd40"
    except ValueError:
        return None


def identify_cpu(cpuinfo: Mapping[str, str], dmi_vendor: str | None = None) -> CpuIdentity:
    """Vendor and microarchitecture from the first /proc/cpuinfo block (a key -> value mapping).

    `dmi_vendor` is /sys/class/dmi/id/sys_vendor: an Arm Neoverse core is called by its AWS
    Graviton name only when that says "Amazon EC2".
    """
    vendor_id = cpuinfo.get("vendor_id")
    if vendor_id:
        family, model = _int(cpuinfo.get("cpu family")), _int(cpuinfo.get("model"))
        raw = f"{vendor_id} family {family} model {model}"
        for row in CPU_FAMILIES:
            if row.vendor_id == vendor_id and row.family == family and model in row.models:
                return CpuIdentity(row.vendor, row.name, raw, row.source)
        return CpuIdentity(None, None, raw)
    implementer, part = _int(cpuinfo.get("CPU implementer")), _int(cpuinfo.get("CPU part"))
    if implementer is None:
        return CpuIdentity(None, None, "no vendor_id or CPU implementer in /proc/cpuinfo")
    raw = f"CPU implementer {implementer:#x} part {part:#x}" if part is not None else f"CPU implementer {implementer:#x}"
    for row in CPU_FAMILIES:
        if row.vendor_id == f"arm:{implementer:#x}" and part in row.models:
            on_ec2 = (dmi_vendor or "").strip() == AMAZON_DMI_VENDOR
            if row.graviton and on_ec2:
                return CpuIdentity("AWS", row.graviton, raw, f"{row.source}; DMI sys_vendor {AMAZON_DMI_VENDOR}")
            return CpuIdentity(row.vendor, row.name, raw, row.source)
    return CpuIdentity(None, None, raw)
