#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "core/check.h"
#include "core/file_io.h"
#include "train/data.h"

namespace seekr {
namespace {

namespace fs = std::filesystem;
using Docs = std::vector<std::vector<int32_t>>;

class DataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("seekr_test_data_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string write_shard(const std::string& name, uint64_t vocab, const Docs& docs) {
    ShardWriter w(path(name), vocab);
    for (const auto& d : docs) w.add_document(d);
    w.finish();
    return path(name);
  }

  fs::path dir_;
};

// Runs fn, which must throw seekr::Error whose message names the file and mentions `field`.
void expect_error(const std::function<void()>& fn, const std::string& file,
                  const std::string& field) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one about " << field;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find(field), std::string::npos) << msg;
  }
}

TEST_F(DataTest, RoundTripBothWidths) {
  for (uint64_t vocab : {uint64_t{1000}, uint64_t{70000}}) {
    const Docs docs = {{1, 2, 3}, {}, {static_cast<int32_t>(vocab - 1)}, {0, 5, 999, 7, 7}};
    const std::string p = write_shard("rt" + std::to_string(vocab) + ".bin", vocab, docs);
    TokenShard s(p);
    EXPECT_EQ(s.vocab_size(), vocab);
    EXPECT_EQ(s.token_width(), vocab <= 65536 ? 2u : 4u);
    EXPECT_EQ(s.doc_count(), docs.size());
    EXPECT_EQ(s.token_count(), 9u);
    const auto off = s.doc_offsets();
    ASSERT_EQ(off.size(), docs.size() + 1);
    for (size_t d = 0; d < docs.size(); ++d) {
      ASSERT_EQ(off[d + 1] - off[d], docs[d].size());
      std::vector<int32_t> got(docs[d].size());
      s.copy_tokens(off[d], got.size(), got.data());
      EXPECT_EQ(got, docs[d]);
      for (size_t i = 0; i < docs[d].size(); ++i) EXPECT_EQ(s.token(off[d] + i), docs[d][i]);
    }
    // 64-byte header + 9 tokens padded to 8 + 5 offsets.
    const size_t token_bytes = 9 * s.token_width();
    EXPECT_EQ(fs::file_size(p), 64 + ((token_bytes + 7) / 8) * 8 + 5 * 8);
  }
}

TEST_F(DataTest, WriterRejectsOutOfVocabIds) {
  ShardWriter w(path("bad.bin"), 100);
  w.add_document(std::vector<int32_t>{1, 2});
  expect_error(
      [&] {
        w.add_document(std::vector<int32_t>{3, 100});
      },
      path("bad.bin"), "token id 100");
  expect_error([&] { w.add_document(std::vector<int32_t>{-1}); }, path("bad.bin"), "token id -1");
  // The rejected documents left nothing behind.
  EXPECT_EQ(w.token_count(), 2u);
  EXPECT_EQ(w.doc_count(), 1u);
  w.finish();
  EXPECT_EQ(TokenShard(path("bad.bin")).token_count(), 2u);
}

TEST_F(DataTest, CorruptShardsNameFileAndField) {
  const std::string good = write_shard("good.bin", 1000, {{1, 2, 3}, {4, 999}});
  const std::string bytes = read_file(good);
  ASSERT_NO_THROW(TokenShard{good});

  struct Case {
    const char* name;
    std::function<void(std::string&)> corrupt;
    const char* field;
  };
  auto put64 = [](std::string& b, size_t at, uint64_t v) { std::memcpy(&b[at], &v, 8); };
  auto put32 = [](std::string& b, size_t at, uint32_t v) { std::memcpy(&b[at], &v, 4); };
  const std::vector<Case> cases = {
      {"magic", [](std::string& b) { b[0] = 'X'; }, "magic"},
      {"version", [&](std::string& b) { put32(b, 8, 2); }, "version 2"},
      {"width", [&](std::string& b) { put32(b, 12, 4); }, "token width"},
      {"vocab0", [&](std::string& b) { put64(b, 16, 0); }, "vocab_size"},
      {"short_header", [](std::string& b) { b.resize(40); }, "truncated header"},
      {"truncated", [](std::string& b) { b.pop_back(); }, "truncated"},
      {"trailing", [](std::string& b) { b += std::string(8, '\0'); }, "trailing bytes"},
      {"token_count_big", [&](std::string& b) { put64(b, 24, 1u << 20); }, "token_count"},
      {"doc_count_more", [&](std::string& b) { put64(b, 32, 3); }, "doc_count"},
      // 5 tokens padded to 16 bytes: offsets start at 64 + 16 = 80; [0, 3, 5].
      {"offset_first", [&](std::string& b) { put64(b, 80, 1); }, "doc_offsets[0]"},
      {"offset_order", [&](std::string& b) { put64(b, 88, 6); }, "doc_offsets decrease"},
      {"offset_last", [&](std::string& b) { put64(b, 96, 4); }, "doc_offsets[doc_count]"},
      {"id_range", [&](std::string& b) { put64(b, 16, 999); }, "token id 999"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string b = bytes;
    c.corrupt(b);
    const std::string p = path(std::string(c.name) + ".bin");
    write_file_atomic(p, b);
    expect_error([&] { TokenShard s(p); }, p, c.field);
  }
  expect_error([&] { TokenShard s(path("missing.bin")); }, path("missing.bin"), "missing.bin");
}

// One shard per entry of `sizes`, documents of the given lengths, tokens numbered
// consecutively across everything so each token tells where it came from.
std::vector<std::vector<int32_t>> numbered_docs(const std::vector<int>& lengths, int32_t& next) {
  std::vector<std::vector<int32_t>> docs;
  for (int len : lengths) {
    auto& d = docs.emplace_back();
    for (int i = 0; i < len; ++i) d.push_back(next++);
  }
  return docs;
}

TEST_F(DataTest, StreamPacksDocumentsWithEos) {
  int32_t next = 0;
  const uint64_t vocab = 70000;
  const int32_t eos = 69999;
  const Docs a = numbered_docs({5, 0, 3}, next), b = numbered_docs({}, next),
             c = numbered_docs({7, 1, 0, 4}, next);
  const std::vector<std::string> paths = {write_shard("a.bin", vocab, a),
                                          write_shard("b.bin", vocab, b),
                                          write_shard("c.bin", vocab, c)};
  std::vector<int32_t> expect_eos, expect_plain;
  for (const Docs* docs : {&a, &b, &c})
    for (const auto& d : *docs) {
      expect_eos.insert(expect_eos.end(), d.begin(), d.end());
      expect_plain.insert(expect_plain.end(), d.begin(), d.end());
      expect_eos.push_back(eos);
    }
  ASSERT_EQ(expect_eos.size(), 27u);

  for (bool with_eos : {true, false}) {
    SCOPED_TRACE(with_eos);
    const auto& expect = with_eos ? expect_eos : expect_plain;
    const int seq = 3;  // windows of 4
    DataLoader dl(paths, 1, seq, 0, /*shuffle=*/false,
                  with_eos ? std::optional<int32_t>(eos) : std::nullopt);
    const size_t windows = expect.size() / 4;
    EXPECT_EQ(dl.windows_per_epoch(), windows);
    EXPECT_EQ(dl.tokens_per_epoch(), windows * seq);
    std::vector<int32_t> got, batch;
    for (size_t i = 0; i < windows; ++i) {
      dl.next(batch);
      ASSERT_EQ(batch.size(), 4u);
      got.insert(got.end(), batch.begin(), batch.end());
    }
    EXPECT_EQ(got, std::vector<int32_t>(expect.begin(), expect.begin() + windows * 4));
    EXPECT_EQ(dl.epoch(), 0);
    dl.next(batch);  // wraps to the first window of epoch 1
    EXPECT_EQ(dl.epoch(), 1);
    EXPECT_EQ(batch, std::vector<int32_t>(expect.begin(), expect.begin() + 4));
  }
}

class LoaderTest : public DataTest {
 protected:
  void SetUp() override {
    DataTest::SetUp();
    int32_t next = 0;
    // 2 shards, 1000 + 1202 tokens: with seq 10 (windows of 11) that is 200 windows.
    paths_ = {write_shard("s0.bin", 70000, numbered_docs({300, 500, 200}, next)),
              write_shard("s1.bin", 70000, numbered_docs({1, 1200, 1}, next))};
  }
  std::vector<std::vector<int32_t>> take(DataLoader& dl, int n) {
    std::vector<std::vector<int32_t>> out(n);
    for (auto& b : out) dl.next(b);
    return out;
  }
  std::vector<std::string> paths_;
};

TEST_F(LoaderTest, SameSeedSameBatchesOtherSeedDiffers) {
  DataLoader a(paths_, 4, 10, 42, true), b(paths_, 4, 10, 42, true), c(paths_, 4, 10, 43, true);
  const auto ba = take(a, 120), bb = take(b, 120), bc = take(c, 120);
  EXPECT_EQ(ba, bb);
  EXPECT_NE(ba, bc);
  // Shuffled, not stream order.
  DataLoader seq(paths_, 4, 10, 42, false);
  EXPECT_NE(take(seq, 50), std::vector<std::vector<int32_t>>(ba.begin(), ba.begin() + 50));
}

TEST_F(LoaderTest, EveryWindowOncePerEpoch) {
  DataLoader dl(paths_, 4, 10, 7, true);
  ASSERT_EQ(dl.windows_per_epoch(), 200u);
  std::vector<std::vector<int>> firsts(3);  // first token of each window, per epoch
  std::vector<int32_t> batch;
  for (int step = 0; step < 150; ++step) {  // 600 windows = 3 epochs
    const int epoch = dl.epoch() + (dl.position() == dl.windows_per_epoch() ? 1 : 0);
    dl.next(batch);
    for (int r = 0; r < 4; ++r) {
      const int32_t* w = batch.data() + r * 11;
      ASSERT_EQ(w[0] % 11, 0);  // windows are aligned to the fixed grid
      for (int i = 1; i < 11; ++i) ASSERT_EQ(w[i], w[0] + i);
      firsts[epoch].push_back(w[0]);
    }
  }
  for (int e = 0; e < 3; ++e) {
    SCOPED_TRACE(e);
    ASSERT_EQ(firsts[e].size(), 200u);
    std::set<int> seen(firsts[e].begin(), firsts[e].end());
    EXPECT_EQ(seen.size(), 200u);
    EXPECT_EQ(*seen.rbegin(), 199 * 11);
  }
  EXPECT_NE(firsts[0], firsts[1]);  // a fresh permutation each epoch
}

TEST_F(LoaderTest, ResumeFromStateGivesSameBatches) {
  // 130 batches of 3 windows = 390 windows: resume mid-epoch 1 after crossing a boundary.
  for (int cut : {0, 1, 66, 67, 130}) {
    SCOPED_TRACE(cut);
    DataLoader full(paths_, 3, 10, 5, true);
    take(full, cut);
    const std::string state = full.state_json();
    const auto want = take(full, 80);

    DataLoader resumed(paths_, 3, 10, /*seed=*/999, true);  // the state's seed wins
    take(resumed, 3);
    resumed.load_state_json(state);
    EXPECT_EQ(resumed.epoch(), (cut * 3) / 200 - (cut * 3 % 200 == 0 && cut > 0 ? 1 : 0));
    EXPECT_EQ(take(resumed, 80), want);
    EXPECT_EQ(resumed.state_json(), full.state_json());
  }
}

TEST_F(LoaderTest, StateForOtherStreamIsRefused) {
  DataLoader dl(paths_, 2, 10, 1, true);
  const std::string state = dl.state_json();
  DataLoader other_seq(paths_, 2, 11, 1, true);
  expect_error([&] { other_seq.load_state_json(state); }, "data loader state", "seq");
  DataLoader unshuffled(paths_, 2, 10, 1, false);
  expect_error([&] { unshuffled.load_state_json(state); }, "data loader state", "shuffle");
  DataLoader fewer({paths_[0]}, 2, 10, 1, true);
  expect_error([&] { fewer.load_state_json(state); }, "data loader state", "stream");
  expect_error([&] { dl.load_state_json("{\"version\":1}"); }, "data loader state", "shuffle");
  expect_error([&] { dl.load_state_json("not json"); }, "data loader state", "invalid JSON");
}

TEST_F(LoaderTest, ValidModeIsSequential) {
  DataLoader dl(paths_, 8, 10, 123, false);
  std::vector<int32_t> batch;
  for (int step = 0; step < 30; ++step) {  // 240 windows: wraps once
    dl.next(batch);
    for (int r = 0; r < 8; ++r) {
      const int window = (step * 8 + r) % 200;
      for (int i = 0; i < 11; ++i) ASSERT_EQ(batch[r * 11 + i], window * 11 + i);
    }
  }
  EXPECT_EQ(dl.epoch(), 1);
  EXPECT_EQ(dl.position(), 40u);
}

TEST_F(DataTest, LoaderRejectsBadInputs) {
  const std::string small = write_shard("small.bin", 100, {{1, 2, 3}});
  const std::string big = write_shard("big.bin", 200, {{1, 2, 3, 4, 5}});
  expect_error([&] { DataLoader dl({small, big}, 1, 2, 0, true); }, big, "vocab_size");
  expect_error([&] { DataLoader dl({small}, 1, 3, 0, true); }, "data loader", "fewer than");
  expect_error([&] { DataLoader dl({small}, 1, 2, 0, true, 100); }, "data loader", "eos id");
}

}  // namespace
}  // namespace seekr
