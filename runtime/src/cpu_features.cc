#include "cpu_features.h"

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace wenet_eff {

namespace {

std::vector<std::pair<const char*, bool CpuFeatures::*>> Fields() {
  return {{"avx2", &CpuFeatures::avx2},
          {"avx512f", &CpuFeatures::avx512f},
          {"avx512_vnni", &CpuFeatures::avx512_vnni},
          {"avx_vnni", &CpuFeatures::avx_vnni},
          {"avx512_bf16", &CpuFeatures::avx512_bf16},
          {"amx_int8", &CpuFeatures::amx_int8},
          {"amx_bf16", &CpuFeatures::amx_bf16}};
}

bool Has(const std::vector<std::string>& available, const std::string& precision) {
  return std::find(available.begin(), available.end(), precision) != available.end();
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : " ") + item;
  return out;
}

}  // namespace

std::string CpuFeatures::ToString() const {
  std::string out;
  for (const auto& [name, field] : Fields())
    if (this->*field) out += (out.empty() ? "" : " ") + std::string(name);
  return out.empty() ? "none of avx2 avx512f avx512_vnni avx_vnni avx512_bf16 amx_int8 amx_bf16"
                     : out;
}

CpuFeatures ParseCpuFeatures(const std::string& names) {
  CpuFeatures f;
  std::istringstream in(names);
  std::string name;
  while (in >> name) {
    bool known = false;
    for (const auto& [field_name, field] : Fields()) {
      if (name == field_name) {
        f.*field = true;
        known = true;
      }
    }
    if (!known) {
      std::string all;
      for (const auto& [field_name, field] : Fields()) all += std::string(" ") + field_name;
      throw std::invalid_argument("CPU feature '" + name + "' unknown (known:" + all + ")");
    }
  }
  return f;
}

#if defined(__x86_64__) || defined(__i386__)
CpuFeatures DetectCpuFeatures() {
  CpuFeatures f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27), avx = ecx & (1u << 28);
  uint64_t xcr0 = 0;
  if (osxsave) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  }
  const bool ymm = (xcr0 & 0x6) == 0x6;                 // SSE + AVX state
  const bool zmm = (xcr0 & 0xE6) == 0xE6;               // + opmask, ZMM upper halves, ZMM16-31
  const bool tiles = (xcr0 & (3ull << 17)) == (3ull << 17);  // AMX tile config + data
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const unsigned subleaves = eax;
  f.avx2 = avx && ymm && (ebx & (1u << 5));
  f.avx512f = zmm && (ebx & (1u << 16));
  f.avx512_vnni = f.avx512f && (ecx & (1u << 11));
  f.amx_bf16 = tiles && (edx & (1u << 22));
  f.amx_int8 = tiles && (edx & (1u << 25));
  if (subleaves >= 1) {
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    f.avx_vnni = ymm && (eax & (1u << 4));
    f.avx512_bf16 = f.avx512f && (eax & (1u << 5));
  }
  return f;
}
#else
CpuFeatures DetectCpuFeatures() { return {}; }
#endif

KernelChoice ChooseKernelPath(const CpuFeatures& cpu, const std::vector<std::string>& available,
                              double int8_share, const std::string& requested) {
  if (available.empty())
    throw std::invalid_argument("the model directory has no .pt2 graphs (meta.json precisions)");
  if (requested != "auto") {
    if (!Has(available, requested))
      throw std::invalid_argument("precision '" + requested + "' is not in the model directory (" +
                                  Join(available) + "; or auto)");
    return {requested, "requested"};
  }
  const std::string cpu_text = "CPU: " + cpu.ToString();
  std::ostringstream share;
  share.precision(2);
  share << int8_share;
  if (Has(available, "int8") && cpu.int8_dot() && int8_share >= 0.5)
    return {"int8", "int8 dot products, int8 share of the weights " + share.str() + "; " +
                        cpu_text};
  if (Has(available, "bf16") && cpu.bf16_dot())
    return {"bf16", "bf16 dot products; " + cpu_text};
  if (Has(available, "int8") && cpu.int8_dot())
    return {"int8", "int8 dot products, int8 share of the weights " + share.str() +
                        " (no bf16 graphs or dot products); " + cpu_text};
  if (Has(available, "fp32"))
    return {"fp32", "no int8 or bf16 dot products for the graphs present; " + cpu_text};
  return {available.front(), "the only kind of graph in the directory; " + cpu_text};
}

}  // namespace wenet_eff
