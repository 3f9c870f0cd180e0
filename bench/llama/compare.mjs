// Exports a seekr checkpoint to GGUF, checks that llama.cpp's greedy tokens equal
// `seekr generate`'s for the same prompt ids, and benchmarks both engines.
//
//   node bench/llama/compare.mjs --seekr build/seekr --model CKPT_DIR [--gguf OUT.gguf]
//       [--type f32] [--skip-export (use an existing --gguf)] [--prompts 4] [--prompt-len 16] [--n 32]
//       [--logits-len 600] [--bench-prompt-len 128] [--bench-n 128] [--threads 1,2]
//       [--repeat 3] [--out R.json]
//
// Greedy check: `--prompts` prompts of `--prompt-len` pseudo-random ids each (seeds 1..),
// `--n` greedy tokens from both engines; a mismatch is reported with llama.cpp's logit margin
// at the first differing step (tiny margins mean float-level ties, not layout bugs).
// Logits: teacher-forced logits of one `--logits-len` random sequence (capped at the context)
// from `seekr score --backend session` and llama.cpp, compared at ~24 positions.
// Benchmark: prompt tok/s for a `--bench-prompt-len` prompt and decode tok/s for `--bench-n`
// tokens, medians of `--repeat` runs, per thread count.
import {execFileSync, spawnSync} from "node:child_process";
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from "node:fs";
import {tmpdir} from "node:os";
import {join} from "node:path";
import {bench, greedy, logitsAt, median, openPeer, parseArgs, syntheticPrompt} from "./llama_peer.mjs";

// A little-endian float32 .npy file (as seekr writes it) as a Float32Array.
function readNpyF32(path) {
    const b = readFileSync(path);
    if (b.toString("latin1", 1, 6) !== "NUMPY") throw new Error(`${path}: not a .npy file`);
    const headerLen = b[6] === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
    const start = (b[6] === 1 ? 10 : 12) + headerLen;
    const header = b.toString("latin1", b[6] === 1 ? 10 : 12, start);
    if (!header.includes("'<f4'")) throw new Error(`${path}: expected float32 ('<f4'), header ${header}`);
    return new Float32Array(b.buffer.slice(b.byteOffset + start, b.byteOffset + b.length));
}

const args = parseArgs(process.argv.slice(2));
if (!args.seekr || !args.model) {
    console.error("usage: node compare.mjs --seekr SEEKR_BIN --model CKPT_DIR [options] (see the header)");
    process.exit(2);
}
const num = (k, d) => Number(args[k] ?? d);
const gguf = args.gguf ?? `${args.model.replace(/\/$/, "")}.gguf`;
const type = args.type ?? "f32";
const config = JSON.parse(readFileSync(`${args.model}/config.json`, "utf8"));
const vocab = config.vocab_size;
const threadList = String(args.threads ?? "1,2").split(",").map(Number);

function seekr(argv) {
    return execFileSync(args.seekr, argv, {encoding: "utf8", stdio: ["ignore", "pipe", "pipe"],
        maxBuffer: 1 << 26});
}
// seekr prints its throughput on stderr.
function seekrWithStderr(argv) {
    const r = spawnSync(args.seekr, argv, {encoding: "utf8", maxBuffer: 1 << 26});
    if (r.status !== 0) throw new Error(`seekr ${argv.join(" ")} failed:\n${r.stderr}`);
    return {stdout: r.stdout, stderr: r.stderr};
}

if (!args["skip-export"]) {
    console.error(`exporting ${args.model} -> ${gguf} (${type})`);
    const exportRun = seekrWithStderr(["export", "gguf", "--model", args.model, "--out", gguf, "--type", type]);
    process.stderr.write(exportRun.stderr + exportRun.stdout);
}

// ---- greedy agreement ----
const nPrompts = num("prompts", 4), promptLen = num("prompt-len", 16), n = num("n", 32);
const prompts = Array.from({length: nPrompts}, (_, i) => syntheticPrompt(promptLen, vocab, i + 1));
const seekrOut = seekr(["generate", "--model", args.model, "--temperature", "0", "--ignore-eos",
    "--max-new-tokens", String(n), "--threads", "1", "--json",
    ...prompts.flatMap((p) => ["--prompt-ids", p.join(",")])]);
const seekrResults = seekrOut.trim().split("\n").map((l) => JSON.parse(l));

const peer = await openPeer({model: gguf, threads: 1, contextSize: promptLen + n + 8, batchSize: promptLen});
const greedyResults = [];
let matched = 0, total = 0, maxLogprobDiff = 0;
for (let i = 0; i < nPrompts; i++) {
    const ll = await greedy(peer, prompts[i], n);
    const ours = seekrResults[i].tokens;
    let first = -1;
    for (let j = 0; j < n; j++) if (ll.tokens[j] !== ours[j]) { first = j; break; }
    // Log-probs of the chosen tokens, comparable while the two sequences agree.
    let diff = 0;
    for (let j = 0; j < (first < 0 ? n : first + 1); j++)
        diff = Math.max(diff, Math.abs(ll.logprobs[j] - seekrResults[i].raw_logprobs[j]));
    maxLogprobDiff = Math.max(maxLogprobDiff, diff);
    const agree = first < 0 ? n : first;
    matched += agree;
    total += n;
    greedyResults.push({prompt: i, identical: first < 0, first_difference: first,
        llama_margin_there: first < 0 ? null : ll.margins[first],
        min_margin: Math.min(...ll.margins), max_logprob_diff: diff, llama: ll.tokens, seekr: ours});
    console.error(`prompt ${i}: ${first < 0 ? `all ${n} greedy tokens identical` :
        `first difference at step ${first} (llama.cpp logit margin there ${ll.margins[first].toExponential(2)})`}` +
        `; smallest llama.cpp top-2 margin ${Math.min(...ll.margins).toExponential(2)}` +
        `; max |log-prob difference| ${diff.toExponential(2)}`);
}
await peer.close();

// ---- teacher-forced logits over a long random sequence (past YaRN's original context) ----
// seekr score's inference-session forward against llama.cpp's, at a sample of positions.
const logitsLen = Math.min(num("logits-len", 600), config.max_position_embeddings);
const seqIds = syntheticPrompt(logitsLen, vocab, 7);
const stride = Math.max(1, Math.floor(logitsLen / 24));
const positions = seqIds.map((_, i) => i).filter((i) => i % stride === stride - 1 || i === logitsLen - 1);
const tmp = mkdtempSync(join(tmpdir(), "seekr-llama-"));
writeFileSync(join(tmp, "seq.jsonl"), JSON.stringify(seqIds) + "\n");
seekr(["score", "--model", args.model, "--tokens", join(tmp, "seq.jsonl"), "--backend", "session",
    "--threads", "1", "--dump-logits", join(tmp, "seekr.npy")]);
const ours = readNpyF32(join(tmp, "seekr.npy"));
const lpeer = await openPeer({model: gguf, threads: 1, contextSize: logitsLen + 8, batchSize: logitsLen});
const theirs = await logitsAt(lpeer, seqIds, positions, vocab);
await lpeer.close();
rmSync(tmp, {recursive: true});
let maxAbs = 0, maxLogit = 0, argmaxAgree = 0;
positions.forEach((pos, r) => {
    let a1 = 0, a2 = 0;
    for (let v = 0; v < vocab; v++) {
        const x = ours[pos * vocab + v], y = theirs[r * vocab + v];
        maxAbs = Math.max(maxAbs, Math.abs(x - y));
        maxLogit = Math.max(maxLogit, Math.abs(x));
        if (x > ours[pos * vocab + a1]) a1 = v;
        if (y > theirs[r * vocab + a2]) a2 = v;
    }
    if (a1 === a2) argmaxAgree++;
});
const logitCheck = {sequence_len: logitsLen, positions: positions.length, max_abs_diff: maxAbs,
    max_abs_logit: maxLogit, argmax_agree: argmaxAgree};
console.error(`teacher-forced logits, ${positions.length} positions up to ${logitsLen - 1}: ` +
    `max |seekr - llama.cpp| ${maxAbs.toExponential(2)} (largest |logit| ${maxLogit.toFixed(2)}), ` +
    `argmax agrees at ${argmaxAgree}/${positions.length}`);

// ---- throughput ----
const bP = num("bench-prompt-len", 128), bN = num("bench-n", 128), repeat = num("repeat", 3);
const benchPrompt = syntheticPrompt(bP, vocab, 99);
const throughput = [];
for (const t of threadList) {
    const p = await openPeer({model: gguf, threads: t, contextSize: bP + bN + 8, batchSize: bP});
    const ll = await bench(p, benchPrompt, bN, repeat);
    await p.close();
    const sk = [];
    for (let r = 0; r < repeat + 1; r++) {  // first run is a warm-up, like the peer's
        const {stderr} = seekrWithStderr(["generate", "--model", args.model, "--temperature", "0",
            "--ignore-eos", "--max-new-tokens", String(bN), "--threads", String(t), "--json",
            "--prompt-ids", benchPrompt.join(",")]);
        const m = stderr.match(/prefill (\d+) tok in [\d.]+ s: ([\d.]+) tok\/s \| decode (\d+) tok in \d+ steps, [\d.]+ s: ([\d.]+) tok\/s/);
        if (!m) throw new Error(`no throughput line in seekr's stderr:\n${stderr}`);
        if (r > 0) sk.push({prompt_tok_s: Number(m[2]), decode_tok_s: Number(m[4])});
    }
    const row = {threads: t,
        llama_prompt_tok_s: ll.prompt_tok_s, llama_decode_tok_s: ll.decode_tok_s,
        seekr_prompt_tok_s: median(sk.map((x) => x.prompt_tok_s)),
        seekr_decode_tok_s: median(sk.map((x) => x.decode_tok_s))};
    throughput.push(row);
    console.error(`threads ${t}: llama.cpp prompt ${row.llama_prompt_tok_s.toFixed(1)} tok/s, decode ` +
        `${row.llama_decode_tok_s.toFixed(1)} tok/s | seekr prompt ${row.seekr_prompt_tok_s.toFixed(1)} ` +
        `tok/s, decode ${row.seekr_decode_tok_s.toFixed(1)} tok/s`);
}

const report = {model: args.model, gguf, type, greedy: {prompts: nPrompts, prompt_len: promptLen,
    new_tokens: n, matched_tokens: matched, total_tokens: total,
    max_logprob_diff: maxLogprobDiff, results: greedyResults},
    logits: logitCheck,
    throughput: {prompt_len: bP, new_tokens: bN, repeat, rows: throughput}};
if (args.out) writeFileSync(args.out, JSON.stringify(report, null, 2) + "\n");
console.log(JSON.stringify({greedy_matched: `${matched}/${total}`,
    max_logprob_diff: maxLogprobDiff, logits: logitCheck, throughput}, null, 1));
