// A small JSON reader for the runtime's own files: meta.json (written by
// wenet_eff.export) and data.list lines ({"key": ..., "wav": ..., "start": ...}).
// Supports objects, arrays, strings (with \uXXXX escapes, BMP and surrogate pairs), numbers,
// true/false/null. Errors throw std::runtime_error with the byte offset.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace wenet_eff {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  static Json Parse(const std::string& text);

  Type type() const { return type_; }
  bool IsObject() const { return type_ == Type::kObject; }
  bool Has(const std::string& key) const;
  // Member access; throws std::runtime_error naming the key when absent or of another type.
  const Json& operator[](const std::string& key) const;
  const Json& operator[](size_t i) const;
  size_t size() const;

  double Number() const;
  int Int() const { return static_cast<int>(Number()); }
  bool Bool() const;
  const std::string& String() const;

  // Defaults for optional members.
  double NumberOr(const std::string& key, double fallback) const;
  std::string StringOr(const std::string& key, const std::string& fallback) const;
  bool BoolOr(const std::string& key, bool fallback) const;

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<Json> array_;
  std::map<std::string, Json> object_;
};

}  // namespace wenet_eff
