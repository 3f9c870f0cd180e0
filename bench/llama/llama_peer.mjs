// llama.cpp as a benchmark peer for seekr: loads a GGUF written by `seekr export gguf` with
// node-llama-cpp's prebuilt CPU binary (no GPU, no build, no download) and runs it on token ids
// (no tokenizer involved).
//
//   node llama_peer.mjs info
//   node llama_peer.mjs greedy --model F.gguf --prompt-ids 0,17,42 --n 32 [--threads T]
//       -> {"tokens": [...], "margins": [...], "logprobs": [...]}: N greedy tokens, for each the
//          gap between the best and second-best logit (small gaps are where two engines may
//          disagree) and its log-probability
//   node llama_peer.mjs logits --model F.gguf --prompt-ids LIST [--positions LIST] --out F.bin
//       -> teacher-forced logits after each listed position (default: all), float32
//          [positions, vocab] little-endian in F.bin
//   node llama_peer.mjs bench --model F.gguf (--prompt-len P | --prompt-ids LIST) --n N
//       --threads T --repeat R
//       -> prompt processing tok/s for a P-token prompt and batch-1 decode tok/s for N tokens,
//          medians over R timed runs after one warm-up run
//
// Install once (CPU binary only, nothing downloaded or compiled):
//   cd bench/llama && npm install --omit=optional --ignore-scripts
import {getLlama} from "node-llama-cpp";
import {writeFileSync} from "node:fs";
import {fileURLToPath} from "node:url";

export function parseArgs(argv) {
    const out = {_: []};
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (!a.startsWith("--")) {
            out._.push(a);
            continue;
        }
        const eq = a.indexOf("=");
        if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
        else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) out[a.slice(2)] = argv[++i];
        else out[a.slice(2)] = true;
    }
    return out;
}

export function parseIds(text) {
    const ids = String(text).split(",").map((s) => Number(s.trim()));
    if (ids.length === 0 || ids.some((x) => !Number.isInteger(x) || x < 0))
        throw new Error(`--prompt-ids expects comma-separated token ids, got '${text}'`);
    return ids;
}

// Deterministic pseudo-random token ids in [lo, vocab), the same for the same seed.
export function syntheticPrompt(length, vocab, seed = 1, lo = 2) {
    let s = (seed * 2654435761) >>> 0 || 1;
    const ids = [];
    for (let i = 0; i < length; i++) {
        s ^= s << 13; s >>>= 0;
        s ^= s >>> 17;
        s ^= s << 5; s >>>= 0;
        ids.push(lo + (s % (vocab - lo)));
    }
    return ids;
}

export const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export async function openPeer({model, threads = 1, contextSize = 1024, batchSize = 512}) {
    const llama = await getLlama({gpu: false, build: "never", maxThreads: threads, logLevel: "error"});
    const m = await llama.loadModel({modelPath: model, gpuLayers: 0});
    const context = await m.createContext({
        contextSize, batchSize, sequences: 1, threads: {ideal: threads, min: threads},
    });
    const sequence = context.getSequence();
    return {llama, model: m, context, sequence,
        async close() {
            await context.dispose();
            await m.dispose();
            await llama.dispose();
        }};
}

// N greedy tokens after `prompt`, each with its top-1 minus top-2 logit gap and its log-prob
// (log-softmax of the logits).
export async function greedy(peer, prompt, n) {
    const seq = peer.sequence;
    await seq.clearHistory();
    const tokens = [], margins = [], logprobs = [];
    let input = prompt;
    for (let i = 0; i < n; i++) {
        const items = input.map((t, j) => j < input.length - 1 ? t :
            [t, {generateNext: {token: true, logits: true, options: {temperature: 0}}}]);
        const res = await seq.controlledEvaluate(items);
        const next = res[input.length - 1].next;
        let best = -Infinity, second = -Infinity, arg = -1;
        for (const [tok, logit] of next.logits) {
            if (logit > best || (logit === best && tok < arg)) {
                second = best; best = logit; arg = tok;
            } else if (logit > second) {
                second = logit;
            }
        }
        if (next.token !== arg)
            throw new Error(`sampler chose ${next.token} but the argmax is ${arg}`);
        let z = 0;
        for (const logit of next.logits.values()) z += Math.exp(logit - best);
        tokens.push(arg);
        margins.push(best - second);
        logprobs.push(-Math.log(z));
        input = [arg];
    }
    return {tokens, margins, logprobs};
}

// Teacher-forced logits of `tokens` at the given positions (row i: the logits after
// tokens[0..positions[i]]), as a Float32Array [positions.length, vocab].
export async function logitsAt(peer, tokens, positions, vocab) {
    const seq = peer.sequence;
    await seq.clearHistory();
    const want = new Set(positions);
    const items = tokens.map((t, j) => want.has(j) ? [t, {generateNext: {logits: true}}] : t);
    const res = await seq.controlledEvaluate(items);
    const out = new Float32Array(positions.length * vocab);
    positions.forEach((pos, i) => {
        for (const [tok, logit] of res[pos].next.logits) out[i * vocab + tok] = logit;
    });
    return out;
}

// One timed generation: prompt processing until the first token, then n-1 decode steps.
async function timedRun(peer, prompt, n) {
    const seq = peer.sequence;
    await seq.clearHistory();
    const t0 = process.hrtime.bigint();
    let t1 = t0, count = 0;
    for await (const _tok of seq.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
        if (++count === 1) t1 = process.hrtime.bigint();
        if (count >= n) break;
    }
    const t2 = process.hrtime.bigint();
    const sec = (a, b) => Number(b - a) / 1e9;
    return {prompt_s: sec(t0, t1), decode_s: sec(t1, t2), decoded: count - 1};
}

export async function bench(peer, prompt, n, repeat) {
    await timedRun(peer, prompt, Math.min(n, 4));  // warm-up: graph allocation, page faults
    const runs = [];
    for (let r = 0; r < repeat; r++) runs.push(await timedRun(peer, prompt, n));
    return {
        prompt_tokens: prompt.length,
        decode_tokens: runs[0].decoded,
        prompt_tok_s: median(runs.map((x) => prompt.length / x.prompt_s)),
        decode_tok_s: median(runs.map((x) => x.decoded / x.decode_s)),
        runs,
    };
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    const mode = args._[0];
    if (mode === "info") {
        const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
        console.log(JSON.stringify({llama_cpp: llama.llamaCppRelease, build: llama.buildType,
            gpu: llama.gpu, cpu: llama.systemInfo.trim()}));
        await llama.dispose();
        return;
    }
    if (!["greedy", "bench", "logits"].includes(mode) || !args.model) {
        console.error("usage: node llama_peer.mjs info | greedy --model F --prompt-ids LIST --n N " +
            "[--threads T] | logits --model F --prompt-ids LIST [--positions LIST] --out F.bin | bench --model F --prompt-len P --n N [--threads T] [--repeat R] [--seed S]");
        process.exit(2);
    }
    const threads = Number(args.threads ?? 1), n = Number(args.n ?? 32);
    if (mode === "logits") {
        const tokens = parseIds(args["prompt-ids"]);
        const positions = args.positions !== undefined ? parseIds(args.positions)
            : tokens.map((_, i) => i);
        const peer = await openPeer({model: args.model, threads, contextSize: tokens.length + 8,
            batchSize: tokens.length});
        const vocab = Number(peer.model.fileInfo.metadata?.deepseek2?.vocab_size);
        const rows = await logitsAt(peer, tokens, positions, vocab);
        writeFileSync(args.out, Buffer.from(rows.buffer));
        console.log(JSON.stringify({rows: positions.length, vocab, out: args.out}));
        await peer.close();
        return;
    }
    if (mode === "greedy") {
        const prompt = parseIds(args["prompt-ids"]);
        const peer = await openPeer({model: args.model, threads,
            contextSize: prompt.length + n + 8, batchSize: Math.max(prompt.length, 8)});
        console.log(JSON.stringify(await greedy(peer, prompt, n)));
        await peer.close();
        return;
    }
    const repeat = Number(args.repeat ?? 3);
    const given = args["prompt-ids"] !== undefined ? parseIds(args["prompt-ids"]) : null;
    const P = given ? given.length : Number(args["prompt-len"] ?? 128);
    const peer = await openPeer({model: args.model, threads, contextSize: P + n + 8, batchSize: P});
    const vocab = Number(peer.model.fileInfo.metadata?.deepseek2?.vocab_size ?? peer.model.tokens.length);
    const prompt = given ?? syntheticPrompt(P, vocab, Number(args.seed ?? 1));
    console.log(JSON.stringify({threads, ...(await bench(peer, prompt, n, repeat))}));
    await peer.close();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    main().catch((e) => {
        console.error(`llama_peer: ${e.stack ?? e}`);
        process.exit(1);
    });
}
