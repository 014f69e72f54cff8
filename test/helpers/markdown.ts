import { readFileSync } from 'node:fs';

/** One fenced code block of a Markdown file. */
export interface CodeBlock {
  /** The Markdown file, as given. */
  file: string;
  /** 1-based line of the block's first code line (the line after the opening fence). */
  line: number;
  /** The fence's info string: `ts`, `yaml`, `sh`, ... (empty when none). */
  lang: string;
  code: string;
  /** The words of a `<!-- snippet ... -->` comment on the line just before the fence, if there is one. */
  annotation: string[] | undefined;
}

const FENCE = /^\s*```(\S*)\s*$/;
const ANNOTATION = /^\s*<!--\s*snippet\b(.*?)-->\s*$/;

/**
 * Every fenced block of a Markdown file, in order. A block may be annotated by an HTML comment on the line before its
 * fence, `<!-- snippet prelude=NAME run -->`: invisible where the Markdown is rendered, read by the snippet test.
 */
export function codeBlocks(file: string, text = readFileSync(file, 'utf8')): CodeBlock[] {
  const lines = text.split('\n');
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] as string);
    if (!open) continue;
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end] as string)) end++;
    let before = i - 1;
    while (before >= 0 && (lines[before] as string).trim() === '') before--;
    const note = before >= 0 ? ANNOTATION.exec(lines[before] as string) : null;
    blocks.push({
      file,
      line: start + 1,
      lang: open[1] ?? '',
      code: lines.slice(start, end).join('\n'),
      annotation: note ? (note[1] ?? '').trim().split(/\s+/).filter(Boolean) : undefined,
    });
    i = end;
  }
  return blocks;
}

/** One link or image of a Markdown file, outside code blocks and code spans. */
export interface MarkdownLink {
  line: number;
  target: string;
}

/** Every inline link and image target (`[text](target)`, `![alt](target)`) outside code. */
export function markdownLinks(text: string): MarkdownLink[] {
  const links: MarkdownLink[] = [];
  let inFence = false;
  text.split('\n').forEach((raw, i) => {
    if (FENCE.test(raw)) {
      inFence = !inFence;
      return;
    }
    if (inFence) return;
    const line = raw.replace(/`[^`]*`/g, '');
    for (const m of line.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      links.push({ line: i + 1, target: m[1] as string });
    }
  });
  return links;
}

/**
 * The anchors GitHub (and npm) give a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens,
 * `-1`, `-2` ... for repeats.
 */
export function headingAnchors(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let inFence = false;
  for (const line of text.split('\n')) {
    if (FENCE.test(line)) inFence = !inFence;
    const m = inFence ? null : /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const slug = (m[1] as string)
      .replace(/`/g, '')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return anchors;
}
