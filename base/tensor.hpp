// Tensor views and typed storage: what every layer above base passes around.
//
// A view is {data, dtype, shape, device}: it owns nothing and is cheap to copy. Storage that
// owns memory is a Buffer: `numel` elements of one dtype on one device, from an Allocator (the
// host's: 64-byte aligned; a CUDA device allocator is the second implementation). 16-bit values
// live in 16-bit storage, never in float vectors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "base/dtype.hpp"
#include "base/error.hpp"

namespace dmpi {

enum class Device : uint8_t { Host, Cuda };
const char* device_name(Device d);

// Up to four dimensions, row-major.
struct Shape {
  static constexpr int kMax = 4;
  int ndim = 0;
  int64_t d[kMax] = {0, 0, 0, 0};
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    DMPI_REQUIRE(dims.size() <= kMax, "a shape has at most " << kMax << " dimensions (got " << dims.size() << ")");
    for (int64_t x : dims) d[ndim++] = x;
  }
  int64_t operator[](int i) const { return d[i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= d[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (ndim != o.ndim) return false;
    for (int i = 0; i < ndim; ++i)
      if (d[i] != o.d[i]) return false;
    return true;
  }
  std::string str() const;  // "[3, 4]"
};

template <class Ptr>  // void* or const void*
struct BasicView {
  Ptr data = nullptr;
  DType dtype = DType::F32;
  Shape shape;
  Device device = Device::Host;

  BasicView() = default;
  BasicView(Ptr p, DType t, Shape s, Device dev = Device::Host) : data(p), dtype(t), shape(s), device(dev) {}
  // a const view of a mutable one
  template <class Q>
  BasicView(const BasicView<Q>& o) : data(o.data), dtype(o.dtype), shape(o.shape), device(o.device) {}

  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  explicit operator bool() const { return data != nullptr; }
  // The typed pointer; throws when the dtype is another one.
  template <class T>
  auto as() const {
    DMPI_REQUIRE(dtype == dtype_of<std::remove_const_t<T>>(),
                 "a " << dtype_name(dtype) << " tensor read as " << dtype_name(dtype_of<std::remove_const_t<T>>()));
    using R = std::conditional_t<std::is_const_v<std::remove_pointer_t<Ptr>>, const std::remove_const_t<T>*,
                                 std::remove_const_t<T>*>;
    return static_cast<R>(data);
  }
  // Element i of the flattened view, widened to float (fp32, bf16, fp16 only).
  float load(int64_t i) const;
  // Rows [r0, r0 + n) of the first dimension.
  BasicView rows(int64_t r0, int64_t n) const {
    BasicView v = *this;
    const int64_t row = shape.ndim ? numel() / shape[0] : 0;
    v.data = static_cast<Ptr>(static_cast<std::conditional_t<std::is_const_v<std::remove_pointer_t<Ptr>>, const char*, char*>>(data) +
                              static_cast<size_t>(r0 * row) * dtype_size(dtype));
    v.shape.d[0] = n;
    return v;
  }
};
using View = BasicView<void*>;
using ConstView = BasicView<const void*>;

template <class T>
View view_of(T* p, Shape s) {
  return View(p, dtype_of<T>(), s);
}
template <class T>
ConstView view_of(const T* p, Shape s) {
  return ConstView(p, dtype_of<T>(), s);
}

// Where buffers come from. The host allocator hands out 64-byte aligned memory that is not
// touched (pages become resident when first written).
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) = 0;
};
Allocator& host_allocator();

// Owned typed storage: numel elements of one dtype. Not zeroed unless asked (zero()).
class Buffer {
 public:
  Buffer() = default;
  Buffer(DType t, size_t numel, Allocator& a = host_allocator());
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  void reset();
  DType dtype() const { return dtype_; }
  size_t numel() const { return numel_; }
  size_t bytes() const { return numel_ * dtype_size(dtype_); }
  bool empty() const { return numel_ == 0; }
  void* data() { return data_; }
  const void* data() const { return data_; }
  template <class T>
  T* as() {
    return view().as<T>();
  }
  template <class T>
  const T* as() const {
    return cview().as<const T>();
  }
  // pointer to element i
  void* at(size_t i) { return static_cast<char*>(data_) + i * dtype_size(dtype_); }
  const void* at(size_t i) const { return static_cast<const char*>(data_) + i * dtype_size(dtype_); }
  View view() { return View(data_, dtype_, Shape{static_cast<int64_t>(numel_)}, device_); }
  View view(Shape s) {
    DMPI_REQUIRE(static_cast<size_t>(s.numel()) <= numel_, "a view of shape " << s.str() << " over " << numel_ << " elements");
    return View(data_, dtype_, s, device_);
  }
  ConstView cview() const { return ConstView(data_, dtype_, Shape{static_cast<int64_t>(numel_)}, device_); }
  void zero();  // every byte 0 (touches every page)

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  size_t numel_ = 0;
  Device device_ = Device::Host;
  Allocator* alloc_ = nullptr;
};

}  // namespace dmpi
