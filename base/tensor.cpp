#include "base/tensor.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

namespace dmpi {

const char* device_name(Device d) { return d == Device::Host ? "host" : "cuda"; }

std::string Shape::str() const {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < ndim; ++i) os << (i ? ", " : "") << d[i];
  os << "]";
  return os.str();
}

template <class Ptr>
float BasicView<Ptr>::load(int64_t i) const {
  switch (dtype) {
    case DType::F32: return static_cast<const float*>(data)[i];
    case DType::BF16: return to_float(static_cast<const bf16*>(data)[i]);
    case DType::F16: return static_cast<float>(static_cast<const _Float16*>(data)[i]);
    default: DMPI_FAIL("load() of a " << dtype_name(dtype) << " tensor");
  }
}
template struct BasicView<void*>;
template struct BasicView<const void*>;

namespace {
class HostAllocator final : public Allocator {
 public:
  Device device() const override { return Device::Host; }
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* p, size_t) override { std::free(p); }
};
}  // namespace

Allocator& host_allocator() {
  static HostAllocator a;
  return a;
}

Buffer::Buffer(DType t, size_t numel, Allocator& a)
    : data_(a.allocate(numel * dtype_size(t))), dtype_(t), numel_(numel), device_(a.device()), alloc_(&a) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = o.data_, dtype_ = o.dtype_, numel_ = o.numel_, device_ = o.device_, alloc_ = o.alloc_;
    o.data_ = nullptr, o.numel_ = 0;
  }
  return *this;
}

void Buffer::reset() {
  if (data_ && alloc_) alloc_->deallocate(data_, bytes());
  data_ = nullptr;
  numel_ = 0;
}

void Buffer::zero() {
  DMPI_REQUIRE(device_ == Device::Host, "Buffer::zero on a " << device_name(device_) << " buffer");
  if (data_) std::memset(data_, 0, bytes());
}

}  // namespace dmpi
