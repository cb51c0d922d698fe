// An open-addressing (linear probing) hash table from 64-bit keys to 32-bit values: 12 bytes
// a slot, at most 0.7 full, no per-entry allocation. The n-gram tables and the context graph's
// arcs use it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace wenet_eff {

class HashIndex {
 public:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // not a key
  static constexpr int64_t kMissing = -1;

  void Reserve(size_t n) {
    size_t capacity = 16;
    while (capacity * 7 < n * 10) capacity *= 2;
    if (capacity > keys_.size()) Grow(capacity);
  }
  // The value of `key`, or kMissing.
  int64_t Find(uint64_t key) const {
    if (keys_.empty()) return kMissing;
    for (size_t s = Slot(key);; s = (s + 1) & (keys_.size() - 1)) {
      if (keys_[s] == key) return values_[s];
      if (keys_[s] == kEmpty) return kMissing;
    }
  }
  // The value of `key`, inserting `value` for it first when it is absent.
  uint32_t Insert(uint64_t key, uint32_t value) {
    if ((size_ + 1) * 10 > keys_.size() * 7) Grow(std::max<size_t>(16, keys_.size() * 2));
    size_t s = Slot(key);
    for (; keys_[s] != kEmpty; s = (s + 1) & (keys_.size() - 1))
      if (keys_[s] == key) return values_[s];
    keys_[s] = key;
    values_[s] = value;
    ++size_;
    return value;
  }
  size_t size() const { return size_; }
  size_t bytes() const {
    return keys_.capacity() * sizeof(uint64_t) + values_.capacity() * sizeof(uint32_t);
  }

 private:
  size_t Slot(uint64_t h) const {  // splitmix64's finalizer
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<size_t>(h ^ (h >> 31)) & (keys_.size() - 1);
  }
  void Grow(size_t capacity) {
    std::vector<uint64_t> keys(capacity, kEmpty);
    std::vector<uint32_t> values(capacity);
    keys.swap(keys_);
    values.swap(values_);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] == kEmpty) continue;
      size_t s = Slot(keys[i]);
      while (keys_[s] != kEmpty) s = (s + 1) & (keys_.size() - 1);
      keys_[s] = keys[i];
      values_[s] = values[i];
    }
  }

  std::vector<uint64_t> keys_;
  std::vector<uint32_t> values_;
  size_t size_ = 0;
};

}  // namespace wenet_eff
