#include "kvault/kernels/codec_spec.h"

#include <charconv>
#include <optional>

namespace kvault::kernels {
namespace {

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string_view::npos ? s.npos : pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

std::optional<uint64_t> ParseUint(std::string_view s) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<CodecId> ParseCodecName(std::string_view name) {
  if (name == "raw") return CodecId::kRaw;
  if (name == "fp8") return CodecId::kFp8;
  if (name == "int8") return CodecId::kInt8;
  if (name == "int4") return CodecId::kInt4;
  if (name == "int2") return CodecId::kInt2;
  return std::nullopt;
}

Status Bad(std::string_view term, std::string_view why) {
  return Status::InvalidArgument("codec spec term '" + std::string(term) +
                                 "': " + std::string(why));
}

// Options collected for one side or for a whole segment.
struct Options {
  std::optional<uint64_t> group;
  bool rotate = false;
  std::optional<uint64_t> sink;
};

Status ParseOption(std::string_view term, Options& opts) {
  if (term == "rot") {
    if (opts.rotate) return Bad(term, "given twice");
    opts.rotate = true;
    return Status::Ok();
  }
  auto value_of = [&](std::string_view prefix) -> std::optional<std::string_view> {
    if (term.substr(0, prefix.size()) == prefix) return term.substr(prefix.size());
    return std::nullopt;
  };
  if (auto v = value_of("g=")) {
    auto n = ParseUint(*v);
    if (!n || *n < 1 || *n > 65535) return Bad(term, "group size must be an integer in 1..65535");
    if (opts.group) return Bad(term, "group size given twice");
    opts.group = *n;
    return Status::Ok();
  }
  if (auto v = value_of("sink=")) {
    auto n = ParseUint(*v);
    if (!n || *n > 65535) return Bad(term, "sink must be an integer in 0..65535");
    if (opts.sink) return Bad(term, "sink given twice");
    opts.sink = *n;
    return Status::Ok();
  }
  return Bad(term,
             "unknown codec or option (codecs: raw, fp8, int8, int4, int2; options: g=N, rot, "
             "sink=N)");
}

struct Side {
  std::optional<SectionCodec> codec;
  bool group_explicit = false;
};

Status ApplyCodecTerm(std::string_view term, std::string_view text, Side& side) {
  if (side.codec) return Bad(term, "sets a side that is already set in this segment");
  const std::vector<std::string_view> parts = Split(text, ':');
  for (std::string_view part : parts) {
    if (part.empty()) return Bad(term, "has an empty part (a stray ':')");
  }
  const auto id = ParseCodecName(parts[0]);
  if (!id) return Bad(term, "unknown codec (expected raw, fp8, int8, int4 or int2)");
  Options opts;
  for (size_t i = 1; i < parts.size(); ++i) KVAULT_RETURN_IF_ERROR(ParseOption(parts[i], opts));
  if (opts.sink) return Bad(term, "sink applies to the whole spec, write it as its own term");
  SectionCodec c{*id, opts.rotate, 0};
  if (opts.group) {
    if (!IsGroupedCodec(*id)) return Bad(term, "g applies only to int4 and int2");
    c.group = static_cast<uint16_t>(*opts.group);
    side.group_explicit = true;
  } else if (IsGroupedCodec(*id)) {
    c.group = kDefaultGroup;
  }
  if (c.rotate && *id == CodecId::kRaw) return Bad(term, "rot needs a lossy codec");
  side.codec = c;
  return Status::Ok();
}

// Parses the terms of one segment into a LayerCodec; `sink` receives a sink term if allowed.
Result<LayerCodec> ParseSegment(std::string_view text, std::optional<uint64_t>* sink) {
  Side k, v;
  Options bare;
  for (std::string_view term : Split(text, ',')) {
    if (term.empty()) return Bad(text, "has an empty term (a stray ',')");
    if (term.substr(0, 2) == "k=") {
      KVAULT_RETURN_IF_ERROR(ApplyCodecTerm(term, term.substr(2), k));
    } else if (term.substr(0, 2) == "v=") {
      KVAULT_RETURN_IF_ERROR(ApplyCodecTerm(term, term.substr(2), v));
    } else if (ParseCodecName(Split(term, ':')[0])) {
      if (v.codec) return Bad(term, "sets a side that is already set in this segment");
      KVAULT_RETURN_IF_ERROR(ApplyCodecTerm(term, term, k));
      v = k;
    } else {
      Options before = bare;
      KVAULT_RETURN_IF_ERROR(ParseOption(term, bare));
      if (bare.sink && !before.sink) {
        if (sink == nullptr) return Bad(term, "sink is allowed only in the default segment");
        *sink = bare.sink;
      }
    }
  }
  if (!k.codec || !v.codec) {
    return Status::InvalidArgument("codec spec segment '" + std::string(text) +
                                   "' must set both K and V (a codec, or k= and v=)");
  }
  if (bare.group) {
    bool applied = false;
    for (Side* s : {&k, &v}) {
      if (IsGroupedCodec(s->codec->codec) && !s->group_explicit) {
        s->codec->group = static_cast<uint16_t>(*bare.group);
        applied = true;
      }
    }
    if (!applied) return Bad(text, "g=N given but no int4/int2 side takes it");
  }
  if (bare.rotate) {
    bool applied = false;
    for (Side* s : {&k, &v}) {
      if (s->codec->codec != CodecId::kRaw) {
        s->codec->rotate = true;
        applied = true;
      }
    }
    if (!applied) return Bad(text, "rot given but every side is raw");
  }
  return LayerCodec{*k.codec, *v.codec};
}

std::string LayerCodecToString(const LayerCodec& c) {
  if (c.k == c.v) return SectionCodecToString(c.k);
  return "k=" + SectionCodecToString(c.k) + ",v=" + SectionCodecToString(c.v);
}

}  // namespace

std::string SectionCodecToString(const SectionCodec& c) {
  std::string s = CodecName(c.codec);
  if (IsGroupedCodec(c.codec)) s += ":g=" + std::to_string(c.group);
  if (c.rotate) s += ":rot";
  return s;
}

std::string CodecSpec::ToString() const {
  std::string s = LayerCodecToString(default_codec);
  if (sink_tokens != 0) s += ",sink=" + std::to_string(sink_tokens);
  for (const LayerRangeOverride& o : overrides) {
    s += ";layers=" + std::to_string(o.first) + "-" + std::to_string(o.last) + ":" +
         LayerCodecToString(o.codec);
  }
  return s;
}

Result<std::vector<LayerCodec>> CodecSpec::ResolveLayers(uint32_t num_layers) const {
  // Checked before the vector is sized: a caller's num_layers may be anything.
  if (num_layers == 0 || num_layers > kMaxLayers) {
    return Status::OutOfRange("num_layers must be in 1.." + std::to_string(kMaxLayers) + ", got " +
                              std::to_string(num_layers));
  }
  std::vector<LayerCodec> out(num_layers, default_codec);
  for (const LayerRangeOverride& o : overrides) {
    if (o.last >= num_layers) {
      return Status::InvalidArgument("codec spec overrides layers " + std::to_string(o.first) +
                                     "-" + std::to_string(o.last) + " but the model has " +
                                     std::to_string(num_layers) + " layers");
    }
    for (uint32_t l = o.first; l <= o.last; ++l) out[l] = o.codec;
  }
  return out;
}

Result<CodecSpec> ParseCodecSpec(std::string_view text) {
  if (text.empty()) return Status::InvalidArgument("codec spec is empty");
  if (text.size() > 4096) return Status::InvalidArgument("codec spec longer than 4096 bytes");
  CodecSpec spec;
  const std::vector<std::string_view> segments = Split(text, ';');
  std::optional<uint64_t> sink;
  for (size_t i = 0; i < segments.size(); ++i) {
    std::string_view seg = segments[i];
    if (seg.empty()) return Bad(text, "has an empty segment (a stray ';')");
    constexpr std::string_view kLayers = "layers=";
    if (i == 0) {
      if (seg.substr(0, kLayers.size()) == kLayers) {
        return Bad(seg, "the first segment is the default and takes no layers=");
      }
      KVAULT_ASSIGN_OR_RETURN(spec.default_codec, ParseSegment(seg, &sink));
      continue;
    }
    if (seg.substr(0, kLayers.size()) != kLayers) {
      return Bad(seg, "override segments start with layers=FIRST-LAST:");
    }
    const size_t colon = seg.find(':');
    const size_t dash = seg.find('-');
    if (colon == seg.npos || dash == seg.npos || dash > colon) {
      return Bad(seg, "expected layers=FIRST-LAST:codec");
    }
    auto first = ParseUint(seg.substr(kLayers.size(), dash - kLayers.size()));
    auto last = ParseUint(seg.substr(dash + 1, colon - dash - 1));
    if (!first || !last || *first > *last || *last >= kMaxLayers) {
      return Bad(
          seg, "layer range must be FIRST-LAST with FIRST <= LAST < " + std::to_string(kMaxLayers));
    }
    KVAULT_ASSIGN_OR_RETURN(LayerCodec codec, ParseSegment(seg.substr(colon + 1), nullptr));
    spec.overrides.push_back({static_cast<uint32_t>(*first), static_cast<uint32_t>(*last), codec});
  }
  spec.sink_tokens = sink ? static_cast<uint32_t>(*sink) : 0;
  return spec;
}

}  // namespace kvault::kernels
