// The JSON reader on meta.json-like and data.list-like input, and its errors.
#include <stdexcept>
#include <string>

#include "check.h"
#include "json.h"

using wenet_eff::Json;

int main() {
  Json j = Json::Parse(
      R"({"key": "utt1", "wav": "/a b/\u00e9\"x\".wav", "start": 1.5, "n": -3e2,)"
      R"( "ok": true, "none": null, "shape": [6, 4, 64, 72], "nested": {"a": [[3, 2]]}})");
  CHECK(j["key"].String() == "utt1");
  CHECK(j["wav"].String() == "/a b/\xc3\xa9\"x\".wav");
  CHECK(j["start"].Number() == 1.5);
  CHECK(j["n"].Int() == -300);
  CHECK(j["ok"].Bool());
  CHECK(j["shape"].size() == 4 && j["shape"][3].Int() == 72);
  CHECK(j["nested"]["a"][0][1].Int() == 2);
  CHECK(j.NumberOr("end", -1) == -1);
  CHECK(j.StringOr("key", "") == "utt1");
  bool threw = false;
  try {
    j["missing"];
  } catch (const std::runtime_error& e) {
    threw = std::string(e.what()).find("missing") != std::string::npos;
  }
  CHECK(threw);
  for (const char* bad : {"{\"a\": }", "{\"a\": 1", "[1, 2", "{\"a\": 1} x", "\"open"}) {
    bool failed = false;
    try {
      Json::Parse(bad);
    } catch (const std::runtime_error&) {
      failed = true;
    }
    CHECK(failed);
  }
  return TEST_RESULT();
}
