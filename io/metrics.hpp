// Per-step metrics as JSON lines (one object per logged step), written by rank 0.
#pragma once
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace dmpi::io {

class MetricsWriter {
 public:
  MetricsWriter() = default;
  explicit MetricsWriter(const std::string& path);  // empty path: disabled
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  void write(const nlohmann::json& record);         // one line, flushed
  bool enabled() const { return f_ != nullptr; }

 private:
  std::FILE* f_ = nullptr;
  std::string path_;
};

}  // namespace dmpi::io
