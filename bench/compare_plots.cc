// PNG plots of `kvault-bench compare` through gnuplot (compare_bench.h).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "compare_bench.h"
#include "store_bench.h"

namespace kvault::bench::compare {
namespace {

namespace fs = std::filesystem;
using store_bench::ChildProcess;

constexpr const char* kScript = "compare_plots.gp";
constexpr const char* kCdfData = "compare_latency_cdf.dat";
constexpr const char* kBarData = "compare_bars.dat";
constexpr const char* kPlots[] = {"compare_latency_cdf.png", "compare_hit_ratio.png",
                                  "compare_throughput.png"};

// Runs `gnuplot args...` in `dir`; its exit code (-1 when it did not finish in time).
int Gnuplot(const std::string& dir, std::vector<std::string> args) {
  ChildProcess::Options o;
  o.argv = {"gnuplot"};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.dir = dir;
  o.stdout_file = (fs::path(dir) / "gnuplot.out").string();
  o.stderr_file = (fs::path(dir) / "gnuplot.err").string();
  Result<std::unique_ptr<ChildProcess>> p = ChildProcess::Start(o);
  if (!p.ok()) return -1;
  const std::optional<int> code = (*p)->Wait(60);
  return code.value_or(-1);
}

bool IsPng(const fs::path& p) {
  static const unsigned char kMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::ifstream f(p, std::ios::binary);
  char head[8] = {};
  f.read(head, sizeof head);
  return f.gcount() == 8 && std::memcmp(head, kMagic, 8) == 0;
}

std::string Quoted(const std::string& label) { return "\"" + label + "\""; }

Status WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.close();
  if (!f) return Status::IoError("cannot write " + path.string());
  return Status::Ok();
}

}  // namespace

PlotOutcome WritePlots(const std::string& dir, const std::vector<CodecResult>& results) {
  PlotOutcome out;
  if (!store_bench::CanExecute("gnuplot")) {
    out.note = "gnuplot is not installed (Debian: apt-get install gnuplot-nox)";
    return out;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    out.note = "cannot create " + dir + ": " + ec.message();
    return out;
  }
  // pngcairo draws antialiased text; plain png (libgd) is the fallback.
  const char* terminal = Gnuplot(dir, {"-e", "set terminal pngcairo"}) == 0 ? "pngcairo" : "png";

  std::string more_ram;  // the raw@Nx run has N x the RAM: the title says so
  for (const CodecResult& r : results) {
    if (r.capacity_multiple > 1) {
      more_ram = " (" + r.label + ": " + std::to_string(r.capacity_multiple) + " x the RAM)";
    }
  }
  std::ostringstream cdf, bars, gp;
  std::vector<std::pair<size_t, std::string>> cdf_series;  // data index, title
  for (const CodecResult& r : results) {
    const std::vector<double>& v = r.summary.restore_ms_per_1k;  // sorted
    bars << Quoted(r.label) << " " << 100 * r.summary.hit_ratio << " "
         << r.summary.store_tokens_per_s << " " << r.summary.load_tokens_per_s << "\n";
    if (v.empty()) continue;
    for (size_t i = 0; i < v.size(); ++i) {
      cdf << v[i] << " " << static_cast<double>(i + 1) / static_cast<double>(v.size()) << "\n";
    }
    cdf << "\n\n";  // next data set (gnuplot 'index')
    cdf_series.emplace_back(cdf_series.size(), r.label);
  }
  gp << "set terminal " << terminal << " size 960,600 noenhanced\n"
     << "set grid\nset key outside right top\n";
  if (!cdf_series.empty()) {
    gp << "set output '" << kPlots[0] << "'\n"
       << "set title 'Restore latency (LookupPrefix + LoadPaged) per codec'\n"
       << "set xlabel 'ms per 1,000 restored tokens (log scale)'\n"
       << "set ylabel 'fraction of restores'\nset logscale x\nset yrange [0:1]\nplot ";
    for (const auto& [index, title] : cdf_series) {
      gp << (index > 0 ? ", " : "") << "'" << kCdfData << "' index " << index
         << " using 1:2 with steps linewidth 2 title " << Quoted(title);
    }
    gp << "\nunset logscale x\nset yrange [*:*]\n";
  }
  gp << "set style data histograms\nset style histogram clustered gap 1\n"
     << "set style fill solid 0.8 border -1\nset boxwidth 0.9\nset xlabel 'codec'\n"
     << "set yrange [0:*]\n"
     << "set output '" << kPlots[1] << "'\n"
     << "set title 'Prefix hit ratio at the same RAM capacity" << more_ram << "'\n"
     << "set ylabel 'hit ratio (% of looked-up blocks)'\n"
     << "plot '" << kBarData << "' using 2:xtic(1) title 'hit ratio'\n"
     << "set output '" << kPlots[2] << "'\n"
     << "set title 'Throughput: tokens per second stored (StorePaged) and loaded (restores)'\n"
     << "set ylabel 'tokens/s'\n"
     << "plot '" << kBarData << "' using 3:xtic(1) title 'store tok/s', '' using 4 title "
     << "'load tok/s'\n";
  for (const auto& [name, text] : {std::pair<const char*, std::string>{kCdfData, cdf.str()},
                                   {kBarData, bars.str()},
                                   {kScript, gp.str()}}) {
    const Status s = WriteFile(fs::path(dir) / name, text);
    if (!s.ok()) {
      out.note = s.message();
      return out;
    }
  }
  for (const char* name : kPlots) fs::remove(fs::path(dir) / name, ec);  // no stale plots
  const int code = Gnuplot(dir, {kScript});
  for (const char* name : kPlots) {
    const fs::path p = fs::path(dir) / name;
    if (name == kPlots[0] && cdf_series.empty()) continue;
    if (IsPng(p)) out.files.push_back(p.string());
  }
  if (code != 0 || out.files.empty()) {
    out.note = "gnuplot failed (exit " + std::to_string(code) + "); see " +
               (fs::path(dir) / "gnuplot.err").string();
  } else if (cdf_series.empty()) {
    out.note = "no latency CDF: no codec restored a cached prefix";
  }
  return out;
}

}  // namespace kvault::bench::compare
