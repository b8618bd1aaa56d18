#include "io/hdf5.hpp"

#include <sstream>
#include <vector>

#include "base/error.hpp"

namespace dmpi::io::h5 {

void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {
herr_t collect(unsigned n, const H5E_error2_t* e, void* out) {
  auto* v = static_cast<std::vector<std::string>*>(out);
  if (e->desc && *e->desc) v->push_back(e->desc);
  return 0;
}
}  // namespace

std::string error_stack() {
  hid_t st = H5Eget_current_stack();
  if (st < 0) return "";
  std::vector<std::string> msgs;
  H5Ewalk2(st, H5E_WALK_UPWARD, collect, &msgs);  // innermost (most specific) first
  H5Eclose_stack(st);
  std::string out;
  for (size_t i = 0; i < msgs.size() && i < 3; ++i) out += (i ? "; " : "") + msgs[i];
  return out;
}

void fail(const char* file, int line, const std::string& what) {
  std::string stack = error_stack();
  throw_error(file, line, what + (stack.empty() ? "" : ": HDF5: " + stack));
}

}  // namespace dmpi::io::h5
