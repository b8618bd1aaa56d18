#include "io/metrics.hpp"

#include <cerrno>
#include <cstring>

#include "base/error.hpp"

namespace dmpi::io {

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  if (path.empty()) return;
  f_ = std::fopen(path.c_str(), "a");
  DMPI_REQUIRE(f_ != nullptr, "cannot open --metrics-file '" << path << "' for appending: " << std::strerror(errno));
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write(const nlohmann::json& record) {
  if (!f_) return;
  std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    DMPI_FAIL("writing --metrics-file '" << path_ << "' failed: " << std::strerror(errno));
}

}  // namespace dmpi::io
