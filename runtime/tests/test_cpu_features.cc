// Kernel-path choice per CPU (cpu_features.h) on faked feature sets: the AMX and AVX-512 VNNI
// Xeons and the AVX2-only EPYCs of the machine pool, the directories the export writes (fp32
// only; fp32 + int8; fp32 + int8 + bf16 with a small int8 share), a requested precision, and
// the feature-name round trip.
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "cpu_features.h"

using wenet_eff::ChooseKernelPath;
using wenet_eff::CpuFeatures;
using wenet_eff::ParseCpuFeatures;

namespace {

std::string Choose(const std::string& cpu, const std::vector<std::string>& available,
                   double share, const std::string& requested = "auto") {
  return ChooseKernelPath(ParseCpuFeatures(cpu), available, share, requested).precision;
}

std::string Error(const std::string& cpu, const std::vector<std::string>& available,
                  const std::string& requested) {
  try {
    Choose(cpu, available, 1.0, requested);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

int main() {
  const std::string amx = "avx2 avx512f avx512_vnni avx512_bf16 amx_int8 amx_bf16";
  const std::string vnni = "avx2 avx512f avx512_vnni";  // Cascade Lake: no bf16
  const std::string zen4 = "avx2 avx512f avx512_vnni avx512_bf16";
  const std::string alder = "avx2 avx_vnni";
  const std::string epyc = "avx2";
  const std::vector<std::string> fp32{"fp32"}, packed{"fp32", "int8"};
  const std::vector<std::string> all{"fp32", "int8", "bf16"};

  // a float directory runs fp32 everywhere
  for (const auto& cpu : {amx, vnni, zen4, alder, epyc}) CHECK(Choose(cpu, fp32, 0.0) == "fp32");
  // per-channel QAT codes: int8 wherever int8 dot products exist, fp32 on AVX2 alone
  for (const auto& cpu : {amx, vnni, zen4, alder}) CHECK(Choose(cpu, packed, 0.97) == "int8");
  CHECK(Choose(epyc, packed, 0.97) == "fp32");
  CHECK(Choose(epyc, all, 0.97) == "fp32");
  CHECK(Choose("", all, 0.97) == "fp32");
  // most weights in sub-channel groups (int8 share 0.1): bf16 where it is fast, else the int8
  // graphs (their per-channel layers on int8, the rest as in fp32)
  CHECK(Choose(amx, all, 0.1) == "bf16");
  CHECK(Choose(zen4, all, 0.1) == "bf16");
  CHECK(Choose(vnni, all, 0.1) == "int8");
  CHECK(Choose(epyc, all, 0.1) == "fp32");
  CHECK(Choose(amx, all, 0.97) == "int8");
  // a float directory exported with bf16 graphs
  CHECK(Choose(amx, {"fp32", "bf16"}, 0.0) == "bf16");
  CHECK(Choose(vnni, {"fp32", "bf16"}, 0.0) == "fp32");
  // a directory of one precision runs it; a requested one is taken as it is
  CHECK(Choose(epyc, {"int8"}, 1.0) == "int8");
  CHECK(Choose(amx, all, 0.97, "fp32") == "fp32");
  CHECK(Choose(epyc, all, 0.97, "int8") == "int8");
  CHECK(Error(amx, packed, "bf16") ==
        "precision 'bf16' is not in the model directory (fp32 int8; or auto)");
  CHECK(Error(amx, {}, "auto").find("no .pt2 graphs") != std::string::npos);
  // the reason names the CPU's features
  CHECK(ChooseKernelPath(ParseCpuFeatures(epyc), packed, 0.9).reason.find("CPU: avx2") !=
        std::string::npos);
  // names round trip; an unknown one is an error naming it
  CHECK(ParseCpuFeatures(amx).ToString() == "avx2 avx512f avx512_vnni avx512_bf16 amx_int8 amx_bf16");
  CHECK(ParseCpuFeatures(alder).int8_dot() && !ParseCpuFeatures(alder).bf16_dot());
  std::string message;
  try {
    ParseCpuFeatures("avx2 avx512vnni");
  } catch (const std::invalid_argument& e) {
    message = e.what();
  }
  CHECK(message.find("'avx512vnni' unknown") != std::string::npos);
  // this machine: whatever it has, auto picks a precision the directory holds
  const CpuFeatures here = wenet_eff::DetectCpuFeatures();
  const std::string chosen = ChooseKernelPath(here, all, 0.97).precision;
  CHECK(chosen == "int8" || chosen == "bf16" || chosen == "fp32");
  CHECK(here.int8_dot() == (chosen == "int8"));
  return TEST_RESULT();
}
