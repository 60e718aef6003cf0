//! The layout stays one-way: checks over the source of `src/` and `protocols/*/src` (no build
//! needed), as ARCHITECTURE.md's "Layers" section states them.
//!
//! - **No circle**: in the graph where each `.rs` file is a node and `A -> B` means file A names
//!   an item of file B (`use`, `crate::`/`super::`/`self::` paths, `switchyard_*::` paths, and a
//!   `mod.rs`/`lib.rs` re-exporting a child's items), there is no cycle.
//! - **Layers**: a file of `src/` imports only files of its own layer or of lower ones.
//! - **Size**: a file of `src/` or `protocols/*/src` over 1,000 lines says in its `//!` doc why
//!   it is one file.
//!
//! The graph is read from the text (comments and string literals removed), not by the
//! compiler: an approximation that errs towards seeing more edges, never fewer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of crate `switchyard`, lowest first: top-level modules of `src/` (a file like
/// `src/pulls.rs` or a folder like `src/bus/`). A module may import its own layer and the
/// layers below it. The protocol crates sit below all of these (cargo enforces that: they do
/// not depend on `switchyard`); the binary (`src/main.rs`) sits above them all.
const LAYERS: &[(&str, &[&str])] = &[
    ("bus", &["bus", "logging", "limits"]),
    ("media services, authorization", &["audio", "auth"]),
    (
        "protocol adapters",
        &["inputs", "outputs", "webrtc", "rtmp", "tls"],
    ),
    ("configuration", &["config"]),
    (
        "pull and push managers, cluster",
        &["pulls", "pushes", "cluster"],
    ),
    (
        "HTTP, load generator, source",
        &["http", "loadtest", "source"],
    ),
    ("server", &["server"]),
];

/// Files over this many lines must say why they are one file.
const MAX_LINES: usize = 1000;
/// What the `//!` doc of such a file must contain.
const SIZE_REASON: &str = "one file";

/// A source file as a node: its crate and module path (`["bus", "stream"]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Module {
    krate: String,
    path: Vec<String>,
}

impl std::fmt::Display for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.krate)?;
        for p in &self.path {
            write!(f, "::{p}")?;
        }
        Ok(())
    }
}

struct SourceFile {
    module: Module,
    text: String,
    file: PathBuf,
}

/// An import: from, to, and the line that made it (for the message).
type Edges = BTreeMap<(Module, Module), String>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file of `src/` (crate `switchyard`; `main.rs` is crate `switchyard_bin`) and of
/// `protocols/NAME/src` (crate `switchyard_NAME`).
fn project_files() -> Vec<SourceFile> {
    let mut roots = vec![("switchyard".to_string(), root().join("src"))];
    for entry in std::fs::read_dir(root().join("protocols")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("src").is_dir() && dir.join("Cargo.toml").is_file() {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            roots.push((format!("switchyard_{name}"), dir.join("src")));
        }
    }
    let mut files = Vec::new();
    for (krate, dir) in roots {
        for file in rs_files(&dir) {
            let rel = file.strip_prefix(&dir).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            let last = path.last().cloned().unwrap_or_default();
            let is_dir_module = matches!(last.as_str(), "mod" | "lib" | "main");
            // `bus/mod.rs` is module `bus`; `src/main.rs` is the root of crate `switchyard_bin`.
            let mut krate = krate.clone();
            if path == ["main"] {
                krate = "switchyard_bin".to_string();
            }
            if is_dir_module {
                path.pop();
            }
            let text = std::fs::read_to_string(&file).unwrap();
            files.push(SourceFile {
                module: Module { krate, path },
                text,
                file,
            });
        }
    }
    files
}

fn rs_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The text with comments, string and char literals blanked out (same length, newlines kept,
/// so offsets still give line numbers).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if let Some(end) = (b[i] == b'r' && (i == 0 || !is_ident(b[i - 1])))
            .then(|| raw_string_end(b, i))
            .flatten()
        {
            blank(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, (j + 1).min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|n| i + 3 + n)
            } else {
                let ch = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 2 + ch)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Where a raw string starting at `i` (`r"`, `r#"`, ...) ends, if one starts there.
fn raw_string_end(b: &[u8], i: usize) -> Option<usize> {
    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
    if b.get(i + 1 + hashes) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat_n(b'#', hashes));
    let start = i + 2 + hashes;
    b[start..]
        .windows(close.len())
        .position(|w| w == close.as_slice())
        .map(|n| start + n + close.len())
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Inline modules (`mod tests { ... }`): their name and byte range, so paths inside them
/// resolve from one level deeper.
fn inline_modules(code: &str) -> Vec<(String, usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(n) = code[i..].find("mod ") {
        let at = i + n;
        i = at + 4;
        if at > 0 && is_ident(b[at - 1]) {
            continue;
        }
        let name: String = code[i..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = code[i..].trim_start()[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        for (j, &c) in b.iter().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((name.clone(), open, j));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The paths a `use` tree names: `a::{b, c::{d, e as f}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand_use_tree(tree: &str) -> Vec<Vec<String>> {
    fn split_top(s: &str) -> Vec<&str> {
        let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
        for (i, c) in s.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        parts.into_iter().filter(|p| !p.is_empty()).collect()
    }
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        for part in split_top(tree) {
            if let Some(brace) = part.find('{') {
                let mut p = prefix.to_vec();
                p.extend(segments(part[..brace].trim_end_matches("::")));
                walk(&p, &part[brace + 1..part.len() - 1], out);
            } else {
                let part = part.split(" as ").next().unwrap_or(part);
                let mut p = prefix.to_vec();
                p.extend(segments(part));
                out.push(p);
            }
        }
    }
    let compact: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let compact = compact.replace(" ::", "::").replace(":: ", "::");
    let compact = compact
        .replace("{ ", "{")
        .replace(" }", "}")
        .replace(", ", ",");
    let mut out = Vec::new();
    walk(&[], compact.trim_start_matches("::"), &mut out);
    out
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every import of every file, as edges between files.
fn import_edges(files: &[SourceFile]) -> Edges {
    let known: BTreeSet<&Module> = files.iter().map(|f| &f.module).collect();
    let mut edges = Edges::new();
    for f in files {
        let code = code_only(&f.text);
        let inline = inline_modules(&code);
        // The module a byte offset of this file is in.
        let scope_at = |at: usize| {
            let mut path = f.module.path.clone();
            for (name, from, to) in &inline {
                if (*from..*to).contains(&at) {
                    path.push(name.clone());
                }
            }
            path
        };
        let mut found: Vec<(usize, Vec<String>, bool)> = Vec::new();
        // `use` trees (their first segment may be a child module: `use stream::Stream`).
        let mut i = 0;
        while let Some(n) = code[i..].find("use ") {
            let at = i + n;
            i = at + 4;
            if at > 0 && is_ident(code.as_bytes()[at - 1]) {
                continue;
            }
            let Some(end) = code[i..].find(';') else {
                break;
            };
            for path in expand_use_tree(&code[i..i + end]) {
                found.push((at, path, true));
            }
        }
        // Paths in code: `crate::a::b`, `super::x`, `switchyard_media::Frame`.
        let b = code.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if is_ident(b[i]) && (i == 0 || !is_ident(b[i - 1])) {
                let word_end = i + b[i..].iter().take_while(|&&c| is_ident(c)).count();
                let word = &code[i..word_end];
                if matches!(word, "crate" | "super" | "self") || word.starts_with("switchyard") {
                    let mut end = word_end;
                    loop {
                        let rest = code[end..].trim_start();
                        let Some(after) = rest.strip_prefix("::") else {
                            break;
                        };
                        let after_trim = after.trim_start();
                        let len = after_trim.bytes().take_while(|&c| is_ident(c)).count();
                        if len == 0 {
                            break;
                        }
                        end = code.len() - after_trim.len() + len;
                    }
                    if end > word_end {
                        found.push((i, segments(&code[i..end]), false));
                    }
                }
                i = word_end;
            } else {
                i += 1;
            }
        }
        for (at, path, in_use) in found {
            let scope = scope_at(at);
            let Some(target) = resolve(&f.module.krate, &scope, &path, in_use, &known) else {
                continue;
            };
            if target != f.module {
                let line = f.text[..at].matches('\n').count() + 1;
                edges
                    .entry((f.module.clone(), target))
                    .or_insert_with(|| format!("{}:{line}", rel(&f.file)));
            }
        }
    }
    edges
}

/// The file a path names: the longest prefix of it that is a file module.
fn resolve(
    krate: &str,
    scope: &[String],
    path: &[String],
    in_use: bool,
    known: &BTreeSet<&Module>,
) -> Option<Module> {
    let (first, rest) = path.split_first()?;
    let (target_crate, mut full) = match first.as_str() {
        "crate" => (krate.to_string(), Vec::new()),
        "self" => (krate.to_string(), scope.to_vec()),
        "super" => (
            krate.to_string(),
            scope[..scope.len().checked_sub(1)?].to_vec(),
        ),
        w if w.starts_with("switchyard") => {
            let k = if w == "switchyard" {
                "switchyard".to_string()
            } else {
                w.to_string()
            };
            (k, Vec::new())
        }
        child if in_use => {
            let mut p = scope.to_vec();
            p.push(child.to_string());
            let m = Module {
                krate: krate.to_string(),
                path: p.clone(),
            };
            if !known.contains(&m) {
                return None;
            }
            (krate.to_string(), scope.to_vec())
        }
        _ => return None,
    };
    let mut rest = rest;
    if first == "super" {
        // `super::super::x`
        while rest.first().is_some_and(|s| s == "super") {
            full.pop()?;
            rest = &rest[1..];
        }
    }
    if !matches!(first.as_str(), "crate" | "self" | "super") && !first.starts_with("switchyard") {
        full.push(first.clone());
    }
    full.extend(rest.iter().cloned());
    (0..=full.len()).rev().find_map(|n| {
        let m = Module {
            krate: target_crate.clone(),
            path: full[..n].to_vec(),
        };
        known.contains(&m).then_some(m)
    })
}

fn rel(file: &Path) -> String {
    file.strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string()
}

/// The cycles of the graph: its strongly connected components with more than one node.
fn cycles(edges: &Edges) -> Vec<Vec<Module>> {
    let mut graph: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        graph.entry(a).or_default().push(b);
        graph.entry(b).or_default();
    }
    // Tarjan's algorithm, iterative.
    let nodes: Vec<&Module> = graph.keys().copied().collect();
    let index_of: BTreeMap<&Module, usize> =
        nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let n = nodes.len();
    let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut next, mut out) = (Vec::new(), 0, Vec::new());
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        while let Some(&mut (v, ref mut child)) = work.last_mut() {
            if *child == 0 && index[v] == usize::MAX {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            let succ = &graph[nodes[v]];
            if *child < succ.len() {
                let w = index_of[succ[*child]];
                *child += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                loop {
                    let w = stack.pop().unwrap();
                    on_stack[w] = false;
                    component.push(nodes[w].clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    out.push(component);
                }
            }
        }
    }
    out
}

fn describe_cycles(edges: &Edges, cycles: &[Vec<Module>]) -> String {
    let mut msg = String::new();
    for c in cycles {
        msg += &format!("circle of {} files:\n", c.len());
        for ((a, b), at) in edges {
            if c.contains(a) && c.contains(b) {
                msg += &format!("  {a} -> {b}   ({at})\n");
            }
        }
    }
    msg
}

fn layer_of(m: &Module) -> Option<usize> {
    if m.krate != "switchyard" {
        return None;
    }
    let top = m.path.first()?;
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&top.as_str()))
}

#[test]
fn import_graph_has_no_circle() {
    let files = project_files();
    assert!(files.len() > 50, "found only {} files", files.len());
    let edges = import_edges(&files);
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "the import graph of src/ and protocols/ has circles (see ARCHITECTURE.md, Layers):\n{}",
        describe_cycles(&edges, &found)
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let files = project_files();
    let unplaced: BTreeSet<String> = files
        .iter()
        .filter(|f| f.module.krate == "switchyard" && !f.module.path.is_empty())
        .filter(|f| layer_of(&f.module).is_none())
        .map(|f| f.module.path[0].clone())
        .collect();
    assert!(
        unplaced.is_empty(),
        "src/ modules not in any layer of tests/layers.rs (and ARCHITECTURE.md): {unplaced:?}"
    );
}

#[test]
fn no_layer_imports_a_higher_one() {
    let files = project_files();
    let edges = import_edges(&files);
    let mut wrong = Vec::new();
    for ((a, b), at) in &edges {
        // Protocol crates cannot name `switchyard` at all (cargo enforces it).
        if a.krate.starts_with("switchyard_") && a.krate != "switchyard_bin" {
            assert!(b.krate != "switchyard", "{a} imports {b} ({at})");
        }
        if let (Some(la), Some(lb)) = (layer_of(a), layer_of(b)) {
            if lb > la {
                wrong.push(format!(
                    "  {a} ({}) -> {b} ({})   at {at}",
                    LAYERS[la].0, LAYERS[lb].0
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "lower layers import higher ones (see ARCHITECTURE.md, Layers):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn files_over_1000_lines_say_why_they_are_one_file() {
    let mut long = Vec::new();
    for f in project_files() {
        let lines = f.text.lines().count();
        let doc: String = f
            .text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("//!"))
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if lines > MAX_LINES && !doc.contains(SIZE_REASON) {
            long.push(format!("  {} ({lines} lines)", rel(&f.file)));
        }
    }
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines whose //! doc does not say why they are {SIZE_REASON}:\n{}",
        long.join("\n")
    );
}

/// The checker itself: it must see imports of every form, ignore comments, strings and
/// `mod tests` scopes, and find a circle made on purpose.
#[test]
fn checker_sees_every_import_form_and_a_circle_made_on_purpose() {
    let file = |krate: &str, path: &[&str], text: &str| SourceFile {
        module: Module {
            krate: krate.to_string(),
            path: path.iter().map(|s| s.to_string()).collect(),
        },
        text: text.to_string(),
        file: PathBuf::from(format!("{}.rs", path.join("/"))),
    };
    let m = |path: &[&str]| Module {
        krate: "switchyard".to_string(),
        path: path.iter().map(|s| s.to_string()).collect(),
    };
    let files = vec![
        file("switchyard", &[], "pub mod bus;\npub mod audio;\npub mod http;"),
        file(
            "switchyard",
            &["bus"],
            "mod stream;\npub use stream::{\n    Stream,\n    TrackSet as Tracks,\n};",
        ),
        file(
            "switchyard",
            &["bus", "stream"],
            "// use crate::http::Nothing;\nconst S: &str = \"crate::http::x\";\nconst C: char = '\"';\n\
             fn f<'a>(x: &'a str) -> Vec<crate::audio::Conversion> { todo!() }\n\
             #[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::bus::Stream;\n}\n",
        ),
        file("switchyard", &["audio"], "use crate::{bus::{Stream, TrackSet}, http};"),
        file("switchyard", &["http"], "fn f() { let _ = switchyard_media::Frame::default(); }"),
        file("switchyard_media", &[], "pub struct Frame;"),
    ];
    let edges = import_edges(&files);
    let pairs: BTreeSet<(Module, Module)> = edges.keys().cloned().collect();
    let media = Module {
        krate: "switchyard_media".to_string(),
        path: vec![],
    };
    let expected: BTreeSet<(Module, Module)> = [
        (m(&["bus"]), m(&["bus", "stream"])),
        (m(&["bus", "stream"]), m(&["audio"])),
        // `mod tests { use crate::bus::Stream; }` in stream.rs names bus (its mod.rs).
        (m(&["bus", "stream"]), m(&["bus"])),
        (m(&["audio"]), m(&["bus"])),
        (m(&["audio"]), m(&["http"])),
        (m(&["http"]), media),
    ]
    .into_iter()
    .collect();
    assert_eq!(pairs, expected, "{edges:#?}");
    let found = cycles(&edges);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0],
        vec![m(&["audio"]), m(&["bus"]), m(&["bus", "stream"])]
    );
    assert!(
        describe_cycles(&edges, &found).contains("switchyard::bus::stream -> switchyard::audio")
    );
}
