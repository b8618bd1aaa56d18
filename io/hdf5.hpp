// Thin RAII over the HDF5 C API. Every call is checked: a failure throws dmpi::Error with
// file:line, the rank, what was being done (usually the file and dataset) and HDF5's own
// messages from its error stack (automatic printing of the stack is turned off).
#pragma once
#include <hdf5.h>

#include <sstream>
#include <string>
#include <utility>

namespace dmpi::io::h5 {

// Turns off HDF5's automatic error printing (call once before any HDF5 call; idempotent).
void quiet();
// HDF5's error stack as one line ("" when empty), and clears it.
std::string error_stack();
[[noreturn]] void fail(const char* file, int line, const std::string& what);

// An owned hid_t with its close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer c) : id_(id), close_(c) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) reset(), id_ = std::exchange(o.id_, H5I_INVALID_HID), close_ = o.close_;
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

}  // namespace dmpi::io::h5

// Checks an hid_t-returning call; `what` (stream expression) says what was being done.
#define DMPI_H5_OPEN(call, closer, what)                                                   \
  [&]() {                                                                                  \
    hid_t dmpi_id_ = (call);                                                               \
    if (dmpi_id_ < 0) {                                                                    \
      std::ostringstream dmpi_os_;                                                         \
      dmpi_os_ << what;                                                                    \
      ::dmpi::io::h5::fail(__FILE__, __LINE__, dmpi_os_.str() + " (" #call ")");           \
    }                                                                                      \
    return ::dmpi::io::h5::Handle(dmpi_id_, closer);                                       \
  }()
// Checks an herr_t-returning call.
#define DMPI_H5_CHECK(call, what)                                                          \
  do {                                                                                     \
    if ((call) < 0) {                                                                      \
      std::ostringstream dmpi_os_;                                                         \
      dmpi_os_ << what;                                                                    \
      ::dmpi::io::h5::fail(__FILE__, __LINE__, dmpi_os_.str() + " (" #call ")");           \
    }                                                                                      \
  } while (0)
