'use strict';
// Unknown-field check for Kubernetes objects ("kubectl --validate=strict").
//
// The validators of kubernetes-models check types, required fields and
// formats but accept fields the API does not know, which is how a mis-indented
// template line usually shows up. The same packages ship TypeScript
// declarations generated from the OpenAPI schema; this module reads those
// interfaces (properties, nested inline object types, Array<...>, index
// signatures) and reports every field of an object that its type does not
// declare.

const fs = require('fs');
const path = require('path');

const fileCache = new Map();

function tokenize(src) {
  const text = src.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
  const re = /\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[A-Za-z_$][\w$]*|-?\d+(?:\.\d+)?|=>|[{}\[\]<>|&:;?,()=.])/y;
  const out = [];
  let m;
  re.lastIndex = 0;
  while (re.lastIndex < text.length) {
    const start = re.lastIndex;
    m = re.exec(text);
    if (!m) {
      if (/^\s*$/.test(text.slice(start))) break;
      throw new Error(`cannot tokenize near: ${text.slice(start, start + 40)}`);
    }
    out.push(m[1]);
  }
  return out;
}

class Parser {
  constructor(tokens, file) { this.t = tokens; this.i = 0; this.file = file; }
  peek(o = 0) { return this.t[this.i + o]; }
  next() { return this.t[this.i++]; }
  eat(tok) {
    if (this.t[this.i] !== tok) {
      throw new Error(`${this.file}: expected ${tok} got ${this.t[this.i]} at token ${this.i}`);
    }
    this.i++;
  }
  // members of an object type up to the closing brace (consumed)
  members() {
    const node = { k: 'obj', props: {}, index: null };
    while (this.peek() !== '}') {
      if (this.peek() === undefined) throw new Error(`${this.file}: unterminated object type`);
      if (this.peek() === '[') {
        this.eat('[');
        this.next(); // key name
        this.eat(':');
        this.type();
        this.eat(']');
        this.eat(':');
        node.index = this.type();
      } else {
        let name = this.next();
        if (name === 'readonly' && this.peek() !== ':' && this.peek() !== '?') name = this.next();
        if (name[0] === '"' || name[0] === "'") name = name.slice(1, -1);
        if (this.peek() === '?') this.next();
        if (this.peek() === '(') { // method signature: skip to ';'
          while (this.peek() !== ';' && this.peek() !== '}') this.next();
        } else {
          this.eat(':');
          node.props[name] = this.type();
        }
      }
      if (this.peek() === ';' || this.peek() === ',') this.next();
    }
    this.eat('}');
    return node;
  }
  type() {
    const parts = [this.postfix()];
    while (this.peek() === '|' || this.peek() === '&') {
      this.next();
      parts.push(this.postfix());
    }
    return parts.length === 1 ? parts[0] : { k: 'union', of: parts };
  }
  postfix() {
    let t = this.primary();
    while (this.peek() === '[' && this.peek(1) === ']') {
      this.next(); this.next();
      t = { k: 'arr', of: t };
    }
    return t;
  }
  primary() {
    const tok = this.next();
    if (tok === '{') return this.members();
    if (tok === '(') { const t = this.type(); this.eat(')'); return t; }
    if (tok[0] === '"' || tok[0] === "'" || /^-?\d/.test(tok)) return { k: 'prim' };
    if (tok === 'Array' && this.peek() === '<') {
      this.eat('<');
      const of = this.type();
      this.eat('>');
      return { k: 'arr', of };
    }
    if (/^[A-Za-z_$]/.test(tok)) {
      if (this.peek() === '<') { // other generics: not followed
        let depth = 0;
        do {
          const x = this.next();
          if (x === '<') depth++;
          if (x === '>') depth--;
        } while (depth > 0);
        return { k: 'prim' };
      }
      if (this.peek() === '[' && this.peek(1) !== ']') { // indexed access IFoo["kind"]
        this.next(); this.next(); this.eat(']');
        return { k: 'prim' };
      }
      if (['string', 'number', 'boolean', 'any', 'unknown', 'object', 'null', 'undefined', 'never'].includes(tok)) {
        return { k: 'prim' };
      }
      return { k: 'ref', name: tok, file: this.file };
    }
    throw new Error(`${this.file}: unexpected token ${tok}`);
  }
}

// Parse one .d.ts: its interfaces, its "export { A as B }" aliases and its
// imports.
function loadFile(file) {
  if (fileCache.has(file)) return fileCache.get(file);
  const info = { interfaces: {}, aliases: {}, imports: {} };
  fileCache.set(file, info);
  const src = fs.readFileSync(file, 'utf8');
  for (const m of src.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
    for (const part of m[1].split(',')) {
      const [orig, local] = part.trim().split(/\s+as\s+/).map((s) => s && s.trim());
      if (orig) info.imports[local || orig] = { name: orig, spec: m[2] };
    }
  }
  for (const m of src.matchAll(/export\s*\{([^}]*)\}\s*;/g)) {
    for (const part of m[1].split(',')) {
      const [orig, alias] = part.trim().split(/\s+as\s+/).map((s) => s && s.trim());
      if (orig && alias) info.aliases[alias] = orig;
    }
  }
  const tokens = tokenize(src);
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === 'interface' && tokens[i + 2] === '{') {
      const p = new Parser(tokens, file);
      p.i = i + 3;
      info.interfaces[tokens[i + 1]] = p.members();
      i = p.i - 1;
    } else if (tokens[i] === 'interface' && tokens[i + 2] === 'extends') {
      // "interface X extends Y {" : parse the body and remember the base
      let j = i + 3;
      const bases = [];
      while (tokens[j] !== '{') { if (/^[A-Za-z_$]/.test(tokens[j])) bases.push(tokens[j]); j++; }
      const p = new Parser(tokens, file);
      p.i = j + 1;
      const node = p.members();
      node.bases = bases.map((b) => ({ k: 'ref', name: b, file }));
      info.interfaces[tokens[i + 1]] = node;
      i = p.i - 1;
    }
  }
  return info;
}

function resolveSpec(spec, fromFile, nodeModules) {
  const base = spec.startsWith('.') ? path.resolve(path.dirname(fromFile), spec) : path.join(nodeModules, spec);
  for (const cand of [base + '.d.ts', path.join(base, 'index.d.ts')]) {
    if (fs.existsSync(cand)) return cand;
  }
  return null;
}

function resolveRef(ref, nodeModules, seen = 0) {
  if (seen > 20) return null;
  const info = loadFile(ref.file);
  if (info.interfaces[ref.name]) return info.interfaces[ref.name];
  if (info.aliases[ref.name]) return resolveRef({ k: 'ref', name: info.aliases[ref.name], file: ref.file }, nodeModules, seen + 1);
  const imp = info.imports[ref.name];
  if (imp) {
    const f = resolveSpec(imp.spec, ref.file, nodeModules);
    if (f) return resolveRef({ k: 'ref', name: imp.name, file: f }, nodeModules, seen + 1);
  }
  return null;
}

function isPlainObject(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }

function check(value, type, where, errors, nodeModules) {
  if (!type || value === null || value === undefined) return;
  switch (type.k) {
    case 'ref': {
      const target = resolveRef(type, nodeModules);
      if (target) check(value, target, where, errors, nodeModules);
      return;
    }
    case 'arr':
      if (Array.isArray(value)) value.forEach((v, i) => check(v, type.of, `${where}[${i}]`, errors, nodeModules));
      return;
    case 'union': {
      const want = Array.isArray(value) ? 'arr' : isPlainObject(value) ? 'obj' : null;
      if (!want) return;
      for (const member of type.of) {
        const m = member.k === 'ref' ? resolveRef(member, nodeModules) : member;
        if (m && m.k === want) { check(value, m, where, errors, nodeModules); return; }
      }
      return;
    }
    case 'obj': {
      if (!isPlainObject(value)) return;
      const props = Object.assign({}, type.props);
      for (const b of type.bases || []) {
        const base = resolveRef(b, nodeModules);
        if (base && base.k === 'obj') Object.assign(props, base.props);
      }
      for (const [key, v] of Object.entries(value)) {
        if (Object.prototype.hasOwnProperty.call(props, key)) {
          check(v, props[key], `${where}.${key}`, errors, nodeModules);
        } else if (type.index) {
          check(v, type.index, `${where}.${key}`, errors, nodeModules);
        } else {
          errors.push(`${where ? where.replace(/^\./, "") : "(top level)"}: unknown field "${key}"`);
        }
      }
      return;
    }
    default:
  }
}

// strictCheck(obj, declarationFile, interfaceName, nodeModules) -> [errors]
function strictCheck(obj, dtsFile, interfaceName, nodeModules) {
  const errors = [];
  const root = resolveRef({ k: 'ref', name: interfaceName, file: dtsFile }, nodeModules);
  if (!root) throw new Error(`no interface ${interfaceName} in ${dtsFile}`);
  check(obj, root, '', errors, nodeModules);
  return errors;
}

module.exports = { strictCheck };
