#!/usr/bin/env bash
# Builds seekr's default English training corpus from Debian packages only (no other
# download), reproducibly: the same packages give the same bytes on every run.
#
#   scripts/corpus.sh OUTDIR
#
# Writes OUTDIR/train.jsonl and OUTDIR/valid.jsonl (one document per line:
# {"source":"...","text":"..."}), plus OUTDIR/train.txt and OUTDIR/valid.txt (the same
# documents as plain text, separated by a blank line, for tokenizer training, where
# document boundaries do not matter). About 1% of documents, chosen by a hash of their
# text, go to valid. Sources, licences and sizes: docs/data.md.
set -euo pipefail
export LC_ALL=C TZ=UTC

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1

# bible-kjv brings the `bible` reader for bible-kjv-text's compressed data; libsword-utils
# brings mod2imp, which dumps the SWORD module of the World English Bible.
packages=(bible-kjv bible-kjv-text fortunes jargon-text libsword-utils sword-text-web dict-devil
          debian-faq debian-policy developers-reference debian-reference-en doc-debian perl)
missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "corpus.sh: installing ${missing[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "corpus.sh: need root to apt-get install the packages above" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi

mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Raw extracts; the Perl stage below splits them into documents and cleans them.
bible -l0 'gen1:1-rev22:21' >"$tmp/kjv.txt"
mod2imp engWEB2015eb >"$tmp/web.imp" 2>/dev/null
zcat /usr/share/doc/jargon-text/jargon.txt.gz >"$tmp/jargon.txt"
zcat /usr/share/dictd/devil.dict.dz >"$tmp/devil.txt"

# Fortune files, minus ASCII art (not prose) and the two files most likely to offend;
# fortunes-off (the offensive set) is never installed.
fortune_dir=/usr/share/games/fortunes
fortune_files=()
for f in "$fortune_dir"/*; do
  name=$(basename "$f")
  case $name in
    *.dat | *.u8 | art | ascii-art | ethnic | men-women | translate-me) continue ;;
  esac
  [[ -f $f && ! -L $f ]] && fortune_files+=("$f")
done

# Manuals, rendered to plain text by Debian's own builds. Only the latest constitution and
# social contract: older versions are near duplicates.
manuals=(
  /usr/share/doc/debian/FAQ/debian-faq.en.txt.gz
  /usr/share/doc/debian-policy/policy.txt.gz
  /usr/share/doc/debian-policy/upgrading-checklist.txt.gz
  /usr/share/doc/debian-policy/fhs/fhs-3.0.txt.gz
  /usr/share/developers-reference/developers-reference.txt.gz
  /usr/share/debian-reference/debian-reference.en.txt.gz
  /usr/share/doc/debian/constitution.txt.gz
  /usr/share/doc/debian/social-contract.txt.gz
  /usr/share/doc/debian/bug-reporting.txt.gz
  /usr/share/doc/debian/bug-maint-info.txt.gz
  /usr/share/doc/debian/mailing-lists.txt.gz
)
mkdir "$tmp/manuals"
for m in "${manuals[@]}"; do
  zcat -f "$m" >"$tmp/manuals/$(basename "$m" .gz)"
done

perl -CS -Mstrict -Mwarnings -MEncode -MDigest::MD5=md5 -MJSON::PP - "$tmp" "$out" \
  "${fortune_files[@]}" <<'PERL'
my ($tmp, $out, @fortune_files) = @ARGV;
my $json = JSON::PP->new->utf8->canonical;
my (%seen, @docs);  # @docs: [source, text] in emission order

sub slurp {
  my ($path) = @_;
  open(my $fh, '<:raw', $path) or die "corpus.sh: cannot read $path: $!\n";
  local $/;
  my $bytes = <$fh>;
  # A few files carry stray Latin-1 bytes; decode them as such rather than drop text.
  my $text = eval { decode('UTF-8', $bytes, Encode::FB_CROAK) };
  $text = decode('ISO-8859-1', $bytes) unless defined $text;
  $text =~ s/\r\n?/\n/g;
  return $text;
}

# Normalises whitespace so documents compare and hash the same however they were split.
sub add {
  my ($source, $text) = @_;
  $text =~ s/\t/    /g;
  $text =~ s/[\x00-\x08\x0b-\x1f\x7f]//g;
  $text =~ s/[ \x{a0}]+$//mg;
  $text =~ s/\n{3,}/\n\n/g;
  $text =~ s/^\n+//;
  $text =~ s/\n+$//;
  return if length($text) < 20;  # headings and separators left over from splitting
  return if $seen{$text}++;
  push @docs, [$source, $text];
}

# Splits long manuals into chunks of whole paragraphs, so the holdout can sample them.
sub add_chunked {
  my ($source, $text, $limit) = @_;
  my $chunk = '';
  for my $para (split /\n{2,}/, $text) {
    if (length($chunk) + length($para) > $limit && length($chunk) > 0) {
      add($source, $chunk);
      $chunk = '';
    }
    $chunk .= "$para\n\n";
  }
  add($source, $chunk);
}

# King James Bible: one document per chapter; verse numbers dropped, one verse per line.
{
  my $text = slurp("$tmp/kjv.txt");
  for my $chapter (split /\n(?=[1-3]?\s?[A-Z][A-Za-z ]+ \d+\n\n)/, $text) {
    $chapter =~ s/^ +\d+ //mg;
    add('kjv', $chapter);
  }
}

# World English Bible (OSIS markup): footnotes and headings dropped, tags stripped.
{
  my ($doc, $key) = ('', '');
  my %ent = (amp => '&', lt => '<', gt => '>', quot => '"', apos => "'");
  for my $entry (split /^\$\$\$/m, slurp("$tmp/web.imp")) {
    my ($ref, $body) = split /\n/, $entry, 2;
    next unless defined $ref && $ref =~ /^(.+) (\d+):(\d+)$/ && $2 > 0 && $3 > 0;
    my ($book, $ch) = ($1, $2);
    $body //= '';
    $body =~ s{<note\b.*?</note>}{}gs;
    $body =~ s{<title\b.*?</title>}{}gs;
    $body =~ s{<[^>]*>}{}g;
    $body =~ s{&(amp|lt|gt|quot|apos);}{$ent{$1}}g;
    $body =~ s/\s+/ /g;
    $body =~ s/^ | $//g;
    if ("$book $ch" ne $key) {
      add('web', $doc) if $key ne '';
      $key = "$book $ch";
      $doc = "$key\n\n";
    }
    $doc .= "$body\n";
  }
  add('web', $doc);
}

# Fortunes: one document per cookie.
for my $file (@fortune_files) {
  add('fortunes', $_) for split /^%\n/m, slurp($file);
}

# Jargon File: chapters and appendices whole, each glossary entry its own document.
{
  my @lines = split /\n/, slurp("$tmp/jargon.txt");
  my ($part, $doc) = ('front', '');
  my $flush = sub { add('jargon', $doc) if $part ne 'front' && $part ne 'toc'; $doc = '' };
  for my $line (@lines) {
    if ($line =~ /^(Chapter \d+|Appendix [A-Z])\. /) {
      $flush->();
      $part = 'prose';
    } elsif ($line =~ /^Glossary$/) {
      $flush->();
      $part = 'toc';  # the glossary opens with a list of every headword
    } elsif ($line =~ /^   :[^:]+:/ && $part ne 'prose') {
      $flush->();
      $part = 'entry';
    }
    $line =~ s/^   //;
    $line =~ s/\{([^{}]*)\}/$1/g;  # cross-reference braces
    $doc .= "$line\n";
  }
  $flush->();
}

# The Devil's Dictionary: preface, then one document per headword.
{
  my $text = slurp("$tmp/devil.txt");
  $text =~ s/^.*?(?=^ +PREFACE$)//ms;
  $text =~ s/^ abcdefghijklmnopqrstuvwxyz\n?\z//m;
  add('devil', $_) for split /\n(?=[A-Z][A-Z'. -]*, [a-z]+\.)/, $text;
}

# Debian manuals, in a fixed order, chunked at paragraphs.
for my $file (sort glob("$tmp/manuals/*")) {
  add_chunked('debian-docs', slurp($file), 4096);
}

my %bytes;
open(my $tj, '>:raw', "$out/train.jsonl") or die "corpus.sh: $out/train.jsonl: $!\n";
open(my $vj, '>:raw', "$out/valid.jsonl") or die "corpus.sh: $out/valid.jsonl: $!\n";
open(my $tt, '>:raw', "$out/train.txt") or die "corpus.sh: $out/train.txt: $!\n";
open(my $vt, '>:raw', "$out/valid.txt") or die "corpus.sh: $out/valid.txt: $!\n";
my %count = (train => 0, valid => 0);
for my $d (@docs) {
  my ($source, $text) = @$d;
  my $utf8 = encode('UTF-8', $text);
  my $split = unpack('N', md5($utf8)) % 100 == 0 ? 'valid' : 'train';
  my ($fj, $ft) = $split eq 'valid' ? ($vj, $vt) : ($tj, $tt);
  print $fj $json->encode({source => $source, text => $text}), "\n";
  print $ft $utf8, "\n\n";
  $count{$split}++;
  $bytes{$source} += length($utf8);
}
close($_) or die "corpus.sh: write failed: $!\n" for ($tj, $vj, $tt, $vt);
printf STDERR "%-12s %10d bytes\n", $_, $bytes{$_} for sort keys %bytes;
printf STDERR "documents: %d train, %d valid\n", $count{train}, $count{valid};
PERL

for f in train.jsonl valid.jsonl train.txt valid.txt; do
  printf '%-12s %10d bytes\n' "$f" "$(stat -c %s "$out/$f")"
done
