// A small, safe Markdown renderer for model replies. It builds DOM nodes and only ever sets
// text with textContent: nothing the model writes can become markup, a script or a handler.
// Links are shown (text and address) but are plain spans: a kiosk must not navigate away.
// Supported: paragraphs, line breaks, # headings, - / 1. lists, > quotes, ``` code blocks,
// **bold**, *italic*, `code`, [text](url) and bare http(s) URLs.

const INLINE = [
  { re: /`([^`\n]+)`/, make: (m) => el("code", m[1]) },
  { re: /\*\*([^*\n]+?)\*\*|__([^_\n]+?)__/, make: (m) => withInline("strong", m[1] ?? m[2]) },
  { re: /\*([^*\s][^*\n]*?)\*|(?<![\w])_([^_\s][^_\n]*?)_(?![\w])/, make: (m) => withInline("em", m[1] ?? m[2]) },
  { re: /\[([^\]\n]+)\]\(\s*([^)\s]+)\s*\)/, make: (m) => link(m[1], m[2]) },
  { re: /\bhttps?:\/\/[^\s<>()]+[^\s<>().,;:!?'"]/, make: (m) => link(m[0], m[0]) },
];

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

function withInline(tag, text) {
  const node = document.createElement(tag);
  appendInline(node, text);
  return node;
}

function link(text, url) {
  // Not an <a>: visible, readable, and inert.
  const span = el("span");
  span.className = "md-link";
  span.append(el("span", text));
  const shown = url.replace(/^https?:\/\//, "").replace(/\/$/, "");
  if (shown !== text.replace(/^https?:\/\//, "").replace(/\/$/, "")) {
    const addr = el("span", ` (${shown})`);
    addr.className = "md-url";
    span.append(addr);
  }
  return span;
}

/** Append `text` to `parent`, turning inline Markdown into elements. */
export function appendInline(parent, text) {
  let rest = text;
  while (rest) {
    let best = null;
    for (const rule of INLINE) {
      const m = rule.re.exec(rest);
      if (m && (best === null || m.index < best.m.index)) best = { m, rule };
    }
    if (best === null) {
      parent.append(document.createTextNode(rest));
      return;
    }
    if (best.m.index > 0) parent.append(document.createTextNode(rest.slice(0, best.m.index)));
    parent.append(best.rule.make(best.m));
    rest = rest.slice(best.m.index + best.m[0].length);
  }
}

function paragraph(lines) {
  const p = el("p");
  lines.forEach((line, i) => {
    if (i) p.append(el("br"));
    appendInline(p, line);
  });
  return p;
}

/** Render `src` into `root` (replacing its children). */
export function renderMarkdown(src, root) {
  const out = [];
  const lines = String(src).replace(/\r\n?/g, "\n").split("\n");
  let para = [];
  let list = null;
  let quote = null;
  const flush = () => {
    if (para.length) out.push(paragraph(para));
    para = [];
    list = null;
    quote = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    let m;
    if (/^\s*```/.test(line)) {
      flush();
      const code = [];
      for (i += 1; i < lines.length && !/^\s*```/.test(lines[i]); i++) code.push(lines[i]);
      const pre = el("pre");
      pre.append(el("code", code.join("\n")));
      out.push(pre);
    } else if ((m = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line))) {
      flush();
      out.push(withInline(m[1].length <= 2 ? "h3" : "h4", m[2]));
    } else if ((m = /^\s*(?:([-*+])|(\d{1,3})[.)])\s+(.*)$/.exec(line))) {
      const tag = m[1] ? "ul" : "ol";
      if (para.length) { out.push(paragraph(para)); para = []; }
      if (!list || list.tagName.toLowerCase() !== tag) {
        list = el(tag);
        if (tag === "ol" && m[2] !== "1") list.start = Number(m[2]);
        out.push(list);
      }
      list.append(withInline("li", m[3]));
    } else if ((m = /^\s*>\s?(.*)$/.exec(line))) {
      if (para.length) { out.push(paragraph(para)); para = []; }
      if (!quote) { quote = el("blockquote"); out.push(quote); }
      quote.append(paragraph([m[1]]));
    } else if (!line.trim()) {
      flush();
    } else if (list && /^\s{2,}\S/.test(line)) {
      // A wrapped list item continues the last item.
      appendInline(list.lastElementChild, " " + line.trim());
    } else {
      list = null;
      quote = null;
      para.push(line.trim());
    }
  }
  flush();
  root.replaceChildren(...out);
}
