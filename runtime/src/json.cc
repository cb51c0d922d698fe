#include "json.h"

#include <cstdlib>
#include <stdexcept>

namespace wenet_eff {

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}

  Json ParseDocument() {
    Json value = ParseValue();
    SkipSpace();
    if (pos_ != s_.size()) Fail("trailing characters");
    return value;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw std::runtime_error("JSON: " + what + " at offset " + std::to_string(pos_));
  }

  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' ||
                                s_[pos_] == '\r'))
      ++pos_;
  }

  char Peek() {
    SkipSpace();
    if (pos_ >= s_.size()) Fail("unexpected end");
    return s_[pos_];
  }

  void Expect(char c) {
    if (Peek() != c) Fail(std::string("expected '") + c + "'");
    ++pos_;
  }

  bool Consume(const char* word) {
    size_t n = std::char_traits<char>::length(word);
    if (s_.compare(pos_, n, word) == 0) {
      pos_ += n;
      return true;
    }
    return false;
  }

  Json ParseValue() {
    Json v;
    char c = Peek();
    if (c == '{') {
      v.type_ = Json::Type::kObject;
      ++pos_;
      if (Peek() == '}') {
        ++pos_;
        return v;
      }
      while (true) {
        if (Peek() != '"') Fail("expected a string key");
        std::string key = ParseString();
        Expect(':');
        v.object_[key] = ParseValue();
        char sep = Peek();
        ++pos_;
        if (sep == '}') break;
        if (sep != ',') Fail("expected ',' or '}'");
      }
    } else if (c == '[') {
      v.type_ = Json::Type::kArray;
      ++pos_;
      if (Peek() == ']') {
        ++pos_;
        return v;
      }
      while (true) {
        v.array_.push_back(ParseValue());
        char sep = Peek();
        ++pos_;
        if (sep == ']') break;
        if (sep != ',') Fail("expected ',' or ']'");
      }
    } else if (c == '"') {
      v.type_ = Json::Type::kString;
      v.string_ = ParseString();
    } else if (Consume("true")) {
      v.type_ = Json::Type::kBool;
      v.bool_ = true;
    } else if (Consume("false")) {
      v.type_ = Json::Type::kBool;
    } else if (Consume("null")) {
      v.type_ = Json::Type::kNull;
    } else {
      const char* begin = s_.c_str() + pos_;
      char* end = nullptr;
      v.number_ = std::strtod(begin, &end);
      if (end == begin) Fail("unexpected character");
      v.type_ = Json::Type::kNumber;
      pos_ += static_cast<size_t>(end - begin);
    }
    return v;
  }

  static void AppendUtf8(unsigned code, std::string* out) {
    if (code < 0x80) {
      out->push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (code >> 6)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else if (code < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (code >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (code >> 18)));
      out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
    }
  }

  unsigned Hex4() {
    if (pos_ + 4 > s_.size()) Fail("short \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      char h = s_[pos_++];
      code <<= 4;
      if (h >= '0' && h <= '9') code |= h - '0';
      else if (h >= 'a' && h <= 'f') code |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') code |= h - 'A' + 10;
      else Fail("bad \\u escape");
    }
    return code;
  }

  std::string ParseString() {
    Expect('"');
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) Fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') break;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) Fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          unsigned code = Hex4();
          if (code >= 0xD800 && code < 0xDC00 && s_.compare(pos_, 2, "\\u") == 0) {
            pos_ += 2;
            unsigned low = Hex4();
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          }
          AppendUtf8(code, &out);
          break;
        }
        default: Fail("bad escape");
      }
    }
    return out;
  }

  const std::string& s_;
  size_t pos_ = 0;
};

Json Json::Parse(const std::string& text) { return JsonParser(text).ParseDocument(); }

bool Json::Has(const std::string& key) const {
  return type_ == Type::kObject && object_.count(key) > 0;
}

const Json& Json::operator[](const std::string& key) const {
  if (type_ != Type::kObject) throw std::runtime_error("JSON: not an object (key '" + key + "')");
  auto it = object_.find(key);
  if (it == object_.end()) throw std::runtime_error("JSON: missing key '" + key + "'");
  return it->second;
}

const Json& Json::operator[](size_t i) const {
  if (type_ != Type::kArray || i >= array_.size())
    throw std::runtime_error("JSON: index " + std::to_string(i) + " out of range");
  return array_[i];
}

size_t Json::size() const {
  return type_ == Type::kArray ? array_.size() : type_ == Type::kObject ? object_.size() : 0;
}

double Json::Number() const {
  if (type_ == Type::kBool) return bool_ ? 1 : 0;
  if (type_ != Type::kNumber) throw std::runtime_error("JSON: not a number");
  return number_;
}

bool Json::Bool() const {
  if (type_ == Type::kNumber) return number_ != 0;
  if (type_ != Type::kBool) throw std::runtime_error("JSON: not a boolean");
  return bool_;
}

const std::string& Json::String() const {
  if (type_ != Type::kString) throw std::runtime_error("JSON: not a string");
  return string_;
}

double Json::NumberOr(const std::string& key, double fallback) const {
  return Has(key) && (*this)[key].type_ == Type::kNumber ? (*this)[key].number_ : fallback;
}

std::string Json::StringOr(const std::string& key, const std::string& fallback) const {
  return Has(key) && (*this)[key].type_ == Type::kString ? (*this)[key].string_ : fallback;
}

bool Json::BoolOr(const std::string& key, bool fallback) const {
  return Has(key) && (*this)[key].type_ == Type::kBool ? (*this)[key].bool_ : fallback;
}

}  // namespace wenet_eff
