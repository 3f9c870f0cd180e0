// Loading, encoding, decoding and writing HF tokenizer.json files (model type BPE).
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <queue>

#include "core/check.h"
#include "core/file_io.h"
#include "tokenizer/impl.h"

namespace seekr {
namespace tokenizer_detail {
namespace {

// ---- JSON access with errors that name the origin and the field ------------------------------

std::string type_name(const Json& j) {
  return j.type_name();
}

const Json& field(const Impl& impl, const Json& obj, const char* key, const std::string& path) {
  SEEKR_REQUIRE(obj.is_object(), impl.origin, ": field '", path, "' must be an object, got ",
                type_name(obj));
  auto it = obj.find(key);
  SEEKR_REQUIRE(it != obj.end(), impl.origin, ": missing field '", path.empty() ? "" : path + ".",
                key, "'");
  return *it;
}

std::string join(const std::string& path, const char* key) {
  return path.empty() ? key : path + "." + key;
}

std::string get_string(const Impl& impl, const Json& j, const std::string& path) {
  SEEKR_REQUIRE(j.is_string(), impl.origin, ": field '", path, "' must be a string, got ",
                type_name(j));
  return j.get<std::string>();
}

bool get_bool(const Impl& impl, const Json& obj, const char* key, const std::string& path,
              bool def) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  SEEKR_REQUIRE(it->is_boolean(), impl.origin, ": field '", join(path, key),
                "' must be a boolean, got ", type_name(*it));
  return it->get<bool>();
}

int32_t get_id(const Impl& impl, const Json& j, const std::string& path) {
  SEEKR_REQUIRE(j.is_number_integer() && j.get<int64_t>() >= 0 && j.get<int64_t>() <= INT32_MAX,
                impl.origin, ": field '", path, "' must be a non-negative 32-bit integer, got ",
                j.dump());
  return static_cast<int32_t>(j.get<int64_t>());
}

std::string type_of(const Impl& impl, const Json& j, const std::string& path) {
  return get_string(impl, field(impl, j, "type", path), join(path, "type"));
}

// ---- model ----------------------------------------------------------------------------------

void parse_model(Impl& impl, const Json& m) {
  const std::string p = "model";
  SEEKR_REQUIRE(m.is_object(), impl.origin, ": field 'model' must be an object, got ",
                type_name(m));
  // HF files written without "type" are BPE when they have merges; insist on it for clarity.
  std::string type = m.contains("type") ? type_of(impl, m, p) : "BPE";
  SEEKR_REQUIRE(type == "BPE", impl.origin, ": field 'model.type' is '", type,
                "'; only BPE is supported");
  auto unsupported_if = [&](const char* key, bool bad, const char* why) {
    SEEKR_REQUIRE(!bad, impl.origin, ": field 'model.", key, "' = ", m.value(key, Json()).dump(),
                  " is not supported (", why, ")");
  };
  auto nonnull = [&](const char* key) { return m.contains(key) && !m[key].is_null(); };
  unsupported_if("dropout",
                 nonnull("dropout") && m["dropout"] != Json(0.0) && m["dropout"] != Json(0),
                 "dropout makes encoding random");
  unsupported_if("continuing_subword_prefix",
                 nonnull("continuing_subword_prefix") && m["continuing_subword_prefix"] != "",
                 "only plain byte-level BPE is implemented");
  unsupported_if("end_of_word_suffix",
                 nonnull("end_of_word_suffix") && m["end_of_word_suffix"] != "",
                 "only plain byte-level BPE is implemented");
  unsupported_if("byte_fallback", get_bool(impl, m, "byte_fallback", p, false),
                 "only plain byte-level BPE is implemented");
  impl.fuse_unk = get_bool(impl, m, "fuse_unk", p, false);
  impl.ignore_merges = get_bool(impl, m, "ignore_merges", p, false);
  if (nonnull("unk_token")) impl.unk_token = get_string(impl, m["unk_token"], "model.unk_token");

  const Json& vocab = field(impl, m, "vocab", p);
  SEEKR_REQUIRE(vocab.is_object(), impl.origin, ": field 'model.vocab' must be an object, got ",
                type_name(vocab));
  impl.vocab.reserve(vocab.size() * 2);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int32_t id = get_id(impl, it.value(), "model.vocab[\"" + it.key() + "\"]");
    if (static_cast<size_t>(id) >= impl.id_to_token.size()) impl.id_to_token.resize(id + 1);
    SEEKR_REQUIRE(impl.id_to_token[id].empty(), impl.origin, ": field 'model.vocab': id ", id,
                  " is used by both '", impl.id_to_token[id], "' and '", it.key(), "'");
    impl.id_to_token[id] = it.key();
    impl.vocab.emplace(it.key(), id);
  }
  if (impl.unk_token) {
    auto u = impl.vocab.find(*impl.unk_token);
    SEEKR_REQUIRE(u != impl.vocab.end(), impl.origin, ": field 'model.unk_token' '",
                  *impl.unk_token, "' is not in model.vocab");
    impl.unk_id = u->second;
  }

  const Json& merges = field(impl, m, "merges", p);
  SEEKR_REQUIRE(merges.is_array(), impl.origin, ": field 'model.merges' must be an array, got ",
                type_name(merges));
  impl.merges.reserve(merges.size());
  impl.merge_rank.reserve(merges.size() * 2);
  std::string a, b;
  for (size_t r = 0; r < merges.size(); ++r) {
    const Json& e = merges[r];
    std::string path = "model.merges[" + std::to_string(r) + "]";
    // Two formats: legacy "a b" strings and (tokenizers >= 0.20) ["a", "b"] pairs.
    if (e.is_string()) {
      const auto& s = e.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      SEEKR_REQUIRE(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
                    impl.origin, ": field '", path, "' = \"", s,
                    "\" must be two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      SEEKR_REQUIRE(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(),
                    impl.origin, ": field '", path,
                    "' must be a string \"a b\" or a pair [\"a\", \"b\"], got ", e.dump());
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    }
    auto ia = impl.vocab.find(a), ib = impl.vocab.find(b), iab = impl.vocab.find(a + b);
    SEEKR_REQUIRE(ia != impl.vocab.end() && ib != impl.vocab.end() && iab != impl.vocab.end(),
                  impl.origin, ": field '", path, "' merges '", a, "' + '", b,
                  "' but the vocab lacks ",
                  ia == impl.vocab.end()   ? "'" + a + "'"
                  : ib == impl.vocab.end() ? "'" + b + "'"
                                           : "the merged token '" + a + b + "'");
    uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    // HF collects merges into a hash map, so a merge listed twice keeps its last rank.
    impl.merge_rank[key] = {static_cast<int32_t>(r), iab->second};
    impl.merges.emplace_back(ia->second, ib->second);
  }
}

void parse_added_tokens(Impl& impl, const Json& arr) {
  if (arr.is_null()) return;
  SEEKR_REQUIRE(arr.is_array(), impl.origin, ": field 'added_tokens' must be an array, got ",
                type_name(arr));
  for (size_t i = 0; i < arr.size(); ++i) {
    std::string p = "added_tokens[" + std::to_string(i) + "]";
    const Json& t = arr[i];
    AddedToken a;
    a.id = get_id(impl, field(impl, t, "id", p), p + ".id");
    a.content = get_string(impl, field(impl, t, "content", p), p + ".content");
    SEEKR_REQUIRE(!a.content.empty(), impl.origin, ": field '", p, ".content' is empty");
    a.special = get_bool(impl, t, "special", p, false);
    a.lstrip = get_bool(impl, t, "lstrip", p, false);
    a.rstrip = get_bool(impl, t, "rstrip", p, false);
    a.normalized = get_bool(impl, t, "normalized", p, !a.special);
    a.single_word = get_bool(impl, t, "single_word", p, false);
    SEEKR_REQUIRE(!a.single_word, impl.origin, ": field '", p,
                  ".single_word' = true is not supported");
    SEEKR_REQUIRE(!impl.added_by_id.count(a.id), impl.origin, ": field '", p, ".id' = ", a.id,
                  " is used by another added token");
    impl.added_by_id[a.id] = impl.added.size();
    impl.added_by_content[a.content] = a.id;
    impl.added.push_back(std::move(a));
  }
}

SplitBehavior parse_behavior(const Impl& impl, const std::string& s, const std::string& path) {
  if (s == "Removed") return SplitBehavior::kRemoved;
  if (s == "Isolated") return SplitBehavior::kIsolated;
  if (s == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (s == "Contiguous") return SplitBehavior::kContiguous;
  throw Error(str_cat(impl.origin, ": field '", path, "' has unknown behavior '", s, "'"));
}

void add_pre_steps(Impl& impl, const Json& j, const std::string& path) {
  if (j.is_null()) return;
  std::string type = type_of(impl, j, path);
  SEEKR_REQUIRE(!impl.is_byte_level, impl.origin, ": field '", path,
                "': a pre-tokenizer after ByteLevel is not supported");
  if (type == "Sequence") {
    const Json& list = field(impl, j, "pretokenizers", path);
    SEEKR_REQUIRE(list.is_array(), impl.origin, ": field '", path,
                  ".pretokenizers' must be an array");
    for (size_t i = 0; i < list.size(); ++i)
      add_pre_steps(impl, list[i], path + ".pretokenizers[" + std::to_string(i) + "]");
  } else if (type == "Split") {
    PreTokStep s;
    s.kind = PreTokStep::kSplit;
    const Json& pat = field(impl, j, "pattern", path);
    std::string pp = path + ".pattern";
    if (pat.is_object() && pat.contains("Regex")) {
      s.regex = std::make_shared<Regex>(get_string(impl, pat["Regex"], pp + ".Regex"),
                                        impl.origin + ": field '" + pp + ".Regex'");
    } else if (pat.is_object() && pat.contains("String")) {
      s.regex =
          std::make_shared<Regex>(Regex::quote(get_string(impl, pat["String"], pp + ".String")),
                                  impl.origin + ": field '" + pp + ".String'");
    } else {
      throw Error(str_cat(impl.origin, ": field '", pp,
                          "' must be {\"Regex\": ...} or {\"String\": ...}, got ", pat.dump()));
    }
    s.behavior =
        parse_behavior(impl, get_string(impl, field(impl, j, "behavior", path), path + ".behavior"),
                       path + ".behavior");
    s.invert = get_bool(impl, j, "invert", path, false);
    impl.pre_steps.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    PreTokStep s;
    s.kind = PreTokStep::kByteLevel;
    s.add_prefix_space = get_bool(impl, j, "add_prefix_space", path, true);
    s.use_regex = get_bool(impl, j, "use_regex", path, true);
    impl.pre_steps.push_back(std::move(s));
    impl.is_byte_level = true;
  } else {
    throw Error(str_cat(impl.origin, ": field '", path, ".type' = '", type,
                        "' is not a supported pre-tokenizer (Sequence, Split, ByteLevel)"));
  }
}

void add_post_steps(Impl& impl, const Json& j, const std::string& path) {
  if (j.is_null()) return;
  std::string type = type_of(impl, j, path);
  if (type == "Sequence") {
    const Json& list = field(impl, j, "processors", path);
    SEEKR_REQUIRE(list.is_array(), impl.origin, ": field '", path, ".processors' must be an array");
    for (size_t i = 0; i < list.size(); ++i)
      add_post_steps(impl, list[i], path + ".processors[" + std::to_string(i) + "]");
  } else if (type == "ByteLevel") {
    impl.post_steps.push_back({PostStep::kNoop, {}});  // only adjusts offsets, never ids
  } else if (type == "TemplateProcessing") {
    PostStep s{PostStep::kTemplate, {}};
    const Json& single = field(impl, j, "single", path);
    const Json& specials = field(impl, j, "special_tokens", path);
    SEEKR_REQUIRE(single.is_array(), impl.origin, ": field '", path, ".single' must be an array");
    for (size_t i = 0; i < single.size(); ++i) {
      std::string ip = path + ".single[" + std::to_string(i) + "]";
      const Json& item = single[i];
      if (item.is_object() && item.contains("Sequence")) {
        s.single.push_back(kSequenceMarker);
      } else if (item.is_object() && item.contains("SpecialToken")) {
        std::string name =
            get_string(impl, field(impl, item["SpecialToken"], "id", ip + ".SpecialToken"),
                       ip + ".SpecialToken.id");
        std::string sp = path + ".special_tokens";
        const Json& tok = field(impl, specials, name.c_str(), sp);
        const Json& ids = field(impl, tok, "ids", join(sp, name.c_str()));
        SEEKR_REQUIRE(ids.is_array(), impl.origin, ": field '", sp, ".", name,
                      ".ids' must be an array");
        for (const Json& id : ids) s.single.push_back(get_id(impl, id, sp + "." + name + ".ids"));
      } else {
        throw Error(str_cat(impl.origin, ": field '", ip,
                            "' must be {\"Sequence\": ...} or {\"SpecialToken\": ...}"));
      }
    }
    impl.post_steps.push_back(std::move(s));
  } else {
    throw Error(str_cat(impl.origin, ": field '", path, ".type' = '", type,
                        "' is not a supported post-processor (ByteLevel, TemplateProcessing, "
                        "Sequence)"));
  }
}

}  // namespace

void parse_pre_tokenizer(Impl& impl, const Json& j, const std::string& path) {
  add_pre_steps(impl, j, path);
  impl.pre_tokenizer_json = OJson::parse(j.dump());
}

void parse_post_processor(Impl& impl, const Json& j, const std::string& path) {
  add_post_steps(impl, j, path);
  impl.post_processor_json = OJson::parse(j.dump());
}

void parse_normalizer(const Impl& impl, const Json& j, const std::string& path) {
  if (j.is_null()) return;
  std::string type = type_of(impl, j, path);
  SEEKR_REQUIRE(type == "Sequence", impl.origin, ": field '", path, ".type' = '", type,
                "' is not a supported normalizer (only none / empty Sequence)");
  const Json& list = field(impl, j, "normalizers", path);
  SEEKR_REQUIRE(list.is_array(), impl.origin, ": field '", path, ".normalizers' must be an array");
  for (size_t i = 0; i < list.size(); ++i)
    parse_normalizer(impl, list[i], path + ".normalizers[" + std::to_string(i) + "]");
}

void parse_decoder(Impl& impl, const Json& j, const std::string& path) {
  impl.decoder_json = OJson::parse(j.dump());
  if (j.is_null()) return;
  std::string type = type_of(impl, j, path);
  SEEKR_REQUIRE(type == "ByteLevel", impl.origin, ": field '", path, ".type' = '", type,
                "' is not a supported decoder (only ByteLevel)");
  impl.decoder_byte_level = true;
}

Json deepseek_pre_tokenizer_json(int max_digits) {
  auto split = [](const std::string& re) {
    return Json{{"type", "Split"},
                {"pattern", {{"Regex", re}}},
                {"behavior", "Isolated"},
                {"invert", false}};
  };
  return Json{
      {"type", "Sequence"},
      {"pretokenizers",
       {split(max_digits == 1 ? std::string(R"(\p{N})")
                              : R"(\p{N}{1,)" + std::to_string(max_digits) + "}"),
        split("[一-龥぀-ゟ゠-ヿ]+"),
        split("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
              "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
        Json{{"type", "ByteLevel"},
             {"add_prefix_space", false},
             {"trim_offsets", true},
             {"use_regex", false}}}}};
}

// ---- Impl ---------------------------------------------------------------------------------------

void Impl::finalize() {
  max_id = static_cast<int32_t>(id_to_token.size()) - 1;
  for (const AddedToken& a : added) max_id = std::max(max_id, a.id);
  for (int b = 0; b < 256; ++b) {
    auto it = vocab.find(byte_level().byte_to_str[b]);
    byte_id[b] = it == vocab.end() ? -1 : it->second;
  }
  raw_matcher.build(added, /*normalized=*/false);
  normalized_matcher.build(added, /*normalized=*/true);
}

const std::string* Impl::token_of(int32_t id) const {
  auto a = added_by_id.find(id);
  if (a != added_by_id.end()) return &added[a->second].content;
  if (id >= 0 && static_cast<size_t>(id) < id_to_token.size() && !id_to_token[id].empty())
    return &id_to_token[id];
  return nullptr;
}

void Impl::bpe_word(std::string_view piece, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    auto it = vocab.find(is_byte_level ? byte_level_encode(piece) : std::string(piece));
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Initial symbols: one per byte-level character (or per UTF-8 character without ByteLevel).
  struct Sym {
    int32_t id, prev, next;
  };
  std::vector<Sym> syms;
  syms.reserve(piece.size());
  std::optional<int32_t> pending_unk;
  auto add = [&](int32_t id) {
    syms.push_back(
        {id, static_cast<int32_t>(syms.size()) - 1, static_cast<int32_t>(syms.size()) + 1});
  };
  std::string ch;
  for (size_t i = 0; i < piece.size();) {
    int32_t id = -1;
    if (is_byte_level) {
      id = byte_id[static_cast<unsigned char>(piece[i++])];
    } else {
      int l = utf8_valid_len(piece, i);
      size_t len = l > 0 ? l : 1;
      ch.assign(piece.substr(i, len));
      i += len;
      auto it = vocab.find(ch);
      if (it != vocab.end()) id = it->second;
    }
    if (id >= 0) {
      if (pending_unk) add(*pending_unk), pending_unk.reset();
      add(id);
    } else if (unk_id) {
      // As HF: consecutive unknowns fuse into one unk when fuse_unk is set; without an unk
      // token unknown characters are dropped.
      if (pending_unk && !fuse_unk) add(*pending_unk);
      pending_unk = *unk_id;
    }
  }
  if (pending_unk) add(*pending_unk);
  if (syms.empty()) return;
  syms.back().next = -1;

  // Lowest rank first, leftmost among equal ranks (HF's BinaryHeap of (rank, pos)).
  struct Cand {
    int32_t rank, pos, new_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto push_pair = [&](int32_t pos) {
    int32_t nx = syms[pos].next;
    if (nx < 0) return;
    uint64_t key = (static_cast<uint64_t>(syms[pos].id) << 32) | static_cast<uint32_t>(syms[nx].id);
    auto m = merge_rank.find(key);
    if (m != merge_rank.end()) queue.push({m->second.first, pos, m->second.second});
  };
  for (int32_t p = 0; p + 1 < static_cast<int32_t>(syms.size()); ++p) push_pair(p);
  while (!queue.empty()) {
    Cand c = queue.top();
    queue.pop();
    Sym& s = syms[c.pos];
    if (s.id < 0 || s.next < 0) continue;
    uint64_t key = (static_cast<uint64_t>(s.id) << 32) | static_cast<uint32_t>(syms[s.next].id);
    auto m = merge_rank.find(key);
    if (m == merge_rank.end() || m->second.second != c.new_id) continue;  // stale entry
    int32_t right = s.next;
    s.id = c.new_id;
    s.next = syms[right].next;
    syms[right].id = -1;
    if (s.next >= 0) syms[s.next].prev = c.pos;
    if (s.prev >= 0) push_pair(s.prev);
    push_pair(c.pos);
  }
  for (int32_t p = 0; p >= 0; p = syms[p].next) out.push_back(syms[p].id);
}

void Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  constexpr size_t kMaxCacheEntries = 1 << 16;
  constexpr size_t kMaxCachedLen = 256;  // long pieces are rare and would bloat the cache
  if (piece.size() > kMaxCachedLen) return bpe_word(piece, out);
  {
    std::shared_lock lock(cache_mu);
    auto it = cache.find(piece);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  bpe_word(piece, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::unique_lock lock(cache_mu);
  if (cache.size() >= kMaxCacheEntries) cache.clear();
  cache.emplace(std::string(piece), std::move(ids));
}

}  // namespace tokenizer_detail

using namespace tokenizer_detail;

Tokenizer::Tokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_json(const std::string& json_text, const std::string& origin) {
  auto impl = std::make_shared<Impl>();
  impl->origin = origin;
  // Parsed unordered: ordered_json inserts keys by linear search, quadratic in a 128k vocab.
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(origin, ": not valid JSON: ", e.what()));
  }
  SEEKR_REQUIRE(j.is_object(), origin, ": top level must be a JSON object, got ", j.type_name());
  parse_model(*impl, field(*impl, j, "model", ""));
  parse_added_tokens(*impl, j.value("added_tokens", Json()));
  parse_normalizer(*impl, j.value("normalizer", Json()), "normalizer");
  impl->normalizer_json = OJson::parse(j.value("normalizer", Json()).dump());
  parse_pre_tokenizer(*impl, j.value("pre_tokenizer", Json()), "pre_tokenizer");
  parse_post_processor(*impl, j.value("post_processor", Json()), "post_processor");
  parse_decoder(*impl, j.value("decoder", Json()), "decoder");
  impl->truncation_json = OJson::parse(j.value("truncation", Json()).dump());
  impl->padding_json = OJson::parse(j.value("padding", Json()).dump());
  impl->finalize();
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  return from_json(read_file(path), path);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<Segment> raw, normalized;
  std::vector<std::string_view> pieces;
  PieceArena arena;
  if (im.raw_matcher.empty())
    raw.push_back({text, -1});
  else
    im.raw_matcher.split(text, raw);
  for (const Segment& seg : raw) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    // The normalizer is the identity (only empty Sequences are accepted), so the normalized
    // text is the segment itself; tokens marked "normalized" are matched on it second, as HF.
    normalized.clear();
    if (im.normalized_matcher.empty())
      normalized.push_back(seg);
    else
      im.normalized_matcher.split(seg.text, normalized);
    for (const Segment& s : normalized) {
      if (s.id >= 0) {
        ids.push_back(s.id);
        continue;
      }
      pieces.clear();
      pre_tokenize(im.pre_steps, s.text, pieces, arena);
      for (std::string_view p : pieces) im.encode_piece(p, ids);
    }
  }
  if (add_special_tokens) {
    for (const PostStep& step : im.post_steps) {
      if (step.kind != PostStep::kTemplate) continue;
      std::vector<int32_t> out;
      out.reserve(ids.size() + step.single.size());
      for (int32_t t : step.single) {
        if (t == kSequenceMarker)
          out.insert(out.end(), ids.begin(), ids.end());
        else
          out.push_back(t);
      }
      ids.swap(out);
    }
  }
  return ids;
}

std::string Tokenizer::decode_bytes(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& im = *impl_;
  const auto& bl = byte_level();
  std::string out;
  bool first = true;
  for (int32_t id : ids) {
    const std::string* tok = im.token_of(id);
    SEEKR_REQUIRE(tok != nullptr, "decode: id ", id, " is not in the vocabulary of ", im.origin);
    if (skip_special && is_special(id)) continue;
    if (!im.decoder_byte_level) {
      // HF without a decoder joins tokens with spaces.
      if (!first) out += ' ';
      out += *tok;
      first = false;
      continue;
    }
    // Each token maps back char by char; a token with any char outside the byte-level
    // alphabet (e.g. an added token like "<｜User｜>") is emitted as its own UTF-8, as HF does.
    size_t mark = out.size();
    bool ok = true;
    for (size_t i = 0; i < tok->size();) {
      int len = utf8_valid_len(*tok, i);
      uint32_t cp = len > 0 ? utf8_decode(*tok, i, len) : 0xFFFFFFFF;
      if (len == 0 || cp >= 324 || bl.cp_to_byte[cp] < 0) {
        ok = false;
        break;
      }
      out += static_cast<char>(bl.cp_to_byte[cp]);
      i += len;
    }
    if (!ok) {
      out.resize(mark);
      out += *tok;
    }
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  return utf8_lossy(decode_bytes(ids, skip_special));
}

int Tokenizer::vocab_size() const {
  return impl_->max_id + 1;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  std::string key(token);
  auto a = impl_->added_by_content.find(key);
  if (a != impl_->added_by_content.end()) return a->second;
  auto v = impl_->vocab.find(key);
  if (v != impl_->vocab.end()) return v->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  const std::string* t = impl_->token_of(id);
  return t ? *t : std::string();
}

bool Tokenizer::is_special(int32_t id) const {
  auto a = impl_->added_by_id.find(id);
  return a != impl_->added_by_id.end() && impl_->added[a->second].special;
}

std::string Tokenizer::to_json() const {
  const Impl& im = *impl_;
  OJson j;
  j["version"] = "1.0";
  j["truncation"] = im.truncation_json;
  j["padding"] = im.padding_json;
  OJson added = OJson::array();
  for (const AddedToken& a : im.added)
    added.push_back({{"id", a.id},
                     {"content", a.content},
                     {"single_word", a.single_word},
                     {"lstrip", a.lstrip},
                     {"rstrip", a.rstrip},
                     {"normalized", a.normalized},
                     {"special", a.special}});
  j["added_tokens"] = std::move(added);
  j["normalizer"] = im.normalizer_json;
  j["pre_tokenizer"] = im.pre_tokenizer_json;
  j["post_processor"] = im.post_processor_json;
  j["decoder"] = im.decoder_json;
  OJson m;
  m["type"] = "BPE";
  m["dropout"] = nullptr;
  m["unk_token"] = im.unk_token ? OJson(*im.unk_token) : OJson();
  m["continuing_subword_prefix"] = nullptr;
  m["end_of_word_suffix"] = nullptr;
  m["fuse_unk"] = im.fuse_unk;
  m["byte_fallback"] = false;
  m["ignore_merges"] = im.ignore_merges;
  // ordered_json's operator[] searches linearly; append to the underlying vector instead so
  // a 128k-entry vocab is written in id order in linear time.
  OJson vocab = OJson::object();
  auto& vobj = vocab.get_ref<OJson::object_t&>();
  vobj.reserve(im.vocab.size());
  for (size_t id = 0; id < im.id_to_token.size(); ++id)
    if (!im.id_to_token[id].empty())
      vobj.emplace_back(std::piecewise_construct, std::forward_as_tuple(im.id_to_token[id]),
                        std::forward_as_tuple(static_cast<int64_t>(id)));
  m["vocab"] = std::move(vocab);
  OJson merges = OJson::array();
  for (auto [a, b] : im.merges) merges.push_back({im.id_to_token[a], im.id_to_token[b]});
  m["merges"] = std::move(merges);
  j["model"] = std::move(m);
  return j.dump(1);
}

void Tokenizer::save(const std::string& path) const {
  write_file_atomic(path, to_json());
}

}  // namespace seekr
