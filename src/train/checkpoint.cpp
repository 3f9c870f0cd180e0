#include "train/checkpoint.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/check.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "model/model.h"
#include "train/optimizer.h"

namespace seekr {

namespace fs = std::filesystem;

nlohmann::json TrainerState::to_json() const {
  nlohmann::json rng_state = nlohmann::json::array();
  for (uint64_t s : rng.s) rng_state.push_back(s);
  return {{"format", "seekr-trainer-state"},
          {"version", 1},
          {"step", step},
          {"tokens_seen", tokens_seen},
          {"schedule", schedule.to_json()},
          {"data_state", nlohmann::json::parse(data_state.empty() ? "null" : data_state)},
          {"rng_state", rng_state},
          {"options", options}};
}

TrainerState TrainerState::from_json(const nlohmann::json& j, const std::string& origin) {
  TrainerState s;
  try {
    SEEKR_REQUIRE(j.value("format", std::string()) == "seekr-trainer-state", origin,
                  ": not a seekr trainer state (field 'format')");
    SEEKR_REQUIRE(j.at("version").get<int>() == 1, origin, ": unsupported trainer state version ",
                  j.at("version").dump());
    s.step = j.at("step").get<int64_t>();
    s.tokens_seen = j.at("tokens_seen").get<int64_t>();
    s.schedule = LrSchedule::from_json(j.at("schedule"));
    const auto& data = j.at("data_state");
    s.data_state = data.is_null() ? std::string() : data.dump();
    const auto& rng = j.at("rng_state");
    SEEKR_REQUIRE(rng.is_array() && rng.size() == 4, origin,
                  ": field 'rng_state' must hold 4 integers");
    for (int i = 0; i < 4; ++i) s.rng.s[i] = rng[i].get<uint64_t>();
    s.options = j.value("options", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(origin, ": bad trainer state: ", e.what()));
  }
  SEEKR_REQUIRE(s.step >= 0 && s.tokens_seen >= 0, origin, ": negative step or tokens_seen");
  return s;
}

namespace {

void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Puts the finished `tmp` directory at `dir`. With an existing checkpoint the two are swapped
// in one atomic rename (RENAME_EXCHANGE) and the old one, now at tmp, is deleted; file systems
// without that call get two renames with the old checkpoint parked at tmp.old meanwhile.
void install_directory(const std::string& tmp, const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    SEEKR_REQUIRE(::rename(tmp.c_str(), dir.c_str()) == 0, "cannot rename ", tmp, " to ", dir, ": ",
                  std::strerror(errno));
    return;
  }
  SEEKR_REQUIRE(fs::is_directory(dir, ec), dir, " exists and is not a checkpoint directory");
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0) {
    fs::remove_all(tmp, ec);
    return;
  }
  const std::string old = tmp + ".old";
  SEEKR_REQUIRE(::rename(dir.c_str(), old.c_str()) == 0, "cannot move the previous checkpoint ",
                dir, " aside: ", std::strerror(errno));
  SEEKR_REQUIRE(::rename(tmp.c_str(), dir.c_str()) == 0, "cannot rename ", tmp, " to ", dir, ": ",
                std::strerror(errno), " (the previous checkpoint is at ", old, ")");
  fs::remove_all(old, ec);
}

}  // namespace

namespace {

// Writes a model directory (plus the optimizer and trainer state when given) through a fresh
// temporary sibling that replaces `dir` only once complete.
void write_model_directory(const std::string& dir, const Model& model, const AdamW* optimizer,
                           const TrainerState* state, const std::string& tokenizer_json) {
  SEEKR_REQUIRE(!dir.empty(), "empty checkpoint path");
  const fs::path target = fs::path(dir).lexically_normal();
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  make_dirs(parent.string());
  std::string tmpl = (target.string() + ".tmp-XXXXXX");
  SEEKR_REQUIRE(::mkdtemp(tmpl.data()), "cannot create a temporary directory next to ", dir, ": ",
                std::strerror(errno));
  const std::string tmp = tmpl;
  // mkdtemp makes the directory private (0700); a checkpoint is shared like any model dir.
  ::chmod(tmp.c_str(), 0755);
  try {
    write_file_atomic(tmp + "/config.json", model.config().to_json_text());
    {
      SafetensorsWriter w;
      model.add_to(w);
      w.set_metadata("format", "pt");
      w.write(tmp + "/model.safetensors");
    }
    if (optimizer) {
      SafetensorsWriter w;
      optimizer->add_to(w);
      w.set_metadata("format", "seekr-adamw");
      w.write(tmp + "/optimizer.safetensors");
    }
    if (!tokenizer_json.empty()) write_file_atomic(tmp + "/tokenizer.json", tokenizer_json);
    if (state) write_file_atomic(tmp + "/trainer_state.json", state->to_json().dump(2) + "\n");
    sync_directory(tmp);
    install_directory(tmp, target.string());
    sync_directory(parent.string());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace

void save_checkpoint(const std::string& dir, const Model& model, const AdamW& optimizer,
                     const TrainerState& state, const std::string& tokenizer_path) {
  write_model_directory(dir, model, &optimizer, &state,
                        tokenizer_path.empty() ? std::string() : read_file(tokenizer_path));
}

void save_model_dir(const std::string& dir, const Model& model, const std::string& tokenizer_json) {
  write_model_directory(dir, model, nullptr, nullptr, tokenizer_json);
}

ModelConfig checkpoint_config(const std::string& dir) {
  return ModelConfig::from_file(dir + "/config.json");
}

TrainerState load_checkpoint(const std::string& dir, Model& model, AdamW& optimizer) {
  const std::string state_path = dir + "/trainer_state.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(state_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(state_path, ": invalid JSON: ", e.what()));
  }
  TrainerState state = TrainerState::from_json(j, state_path);
  model.load(TensorSource::open(dir + "/model.safetensors"));
  optimizer.load(TensorSource::open(dir + "/optimizer.safetensors"));
  SEEKR_REQUIRE(optimizer.steps() == state.step, dir, ": optimizer.safetensors is at step ",
                optimizer.steps(), " but trainer_state.json at step ", state.step);
  return state;
}

}  // namespace seekr
