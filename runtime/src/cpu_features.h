// The CPU features that decide which kernel path of a runtime model directory runs
// (wenet_eff.export.kernels: fp32, bf16, int8 graph variants over one weights.bin):
// int8 dot products (AVX-512 VNNI, AVX-VNNI, AMX-INT8) make the int8 graphs' oneDNN integer
// GEMMs fast (without them torch._int_mm is a plain loop, ~50x slower than fp32), bf16 dot
// products (AMX-BF16, AVX512-BF16) the bf16 graphs'; otherwise fp32 runs.
#pragma once

#include <string>
#include <vector>

namespace wenet_eff {

struct CpuFeatures {
  bool avx2 = false, avx512f = false, avx512_vnni = false, avx_vnni = false;
  bool avx512_bf16 = false, amx_int8 = false, amx_bf16 = false;

  bool int8_dot() const { return avx512_vnni || avx_vnni || amx_int8; }
  bool bf16_dot() const { return avx512_bf16 || amx_bf16; }
  // The features present, space-separated, named as /proc/cpuinfo names them.
  std::string ToString() const;
};

// This CPU's features (cpuid, counting only what the OS saves the registers of: xgetbv).
CpuFeatures DetectCpuFeatures();

// Features from names as ToString writes them ("avx2 avx512_vnni"); an unknown name throws
// std::invalid_argument naming it and the known ones.
CpuFeatures ParseCpuFeatures(const std::string& names);

struct KernelChoice {
  std::string precision;  // one of the directory's precisions
  std::string reason;     // why, for the log
};

// The kernel path to run among the precisions a model directory holds (`available`, from
// meta.json), for `requested` = "auto" or a precision. auto: int8 where the CPU has int8 dot
// products and the int8 graphs run at least half of the weights on them (`int8_share`); else
// bf16 where it has bf16 dot products; else int8 with int8 dot products (a smaller share);
// else fp32; a directory without fp32 runs what it has. Throws std::invalid_argument when
// `requested` is not in the directory (naming what is) or `available` is empty.
KernelChoice ChooseKernelPath(const CpuFeatures& cpu, const std::vector<std::string>& available,
                              double int8_share, const std::string& requested = "auto");

}  // namespace wenet_eff
