//! keepalived.conf's surface syntax: lines of words, `{ }` blocks, comments, quotes and
//! `include`, read into a tree of [`Node`]s where every word knows its file, line and column.
//!
//! The rules follow keepalived's own reader (lib/parser.c):
//! - `#` and `!` start a comment anywhere outside quotes;
//! - words are separated by blanks; `"` and `'` quote (the quotes are removed, the blanks
//!   inside kept, and a quoted part joins the unquoted text around it: `ab"c d"e` is one
//!   word); backslash escapes (`\n`, `\t`, `\xHH`, `\NNN`, `\cC`, `\C`) work everywhere;
//! - `{` and `}` outside quotes are words of their own even when glued to text, so a block
//!   may open on the keyword's line or the next one and close on any line;
//! - `include PATTERN` (and `includer`/`includem`/`includew`/`includeb`/`includea`) is
//!   replaced by the files the glob matches, in sorted order, relative to the directory of
//!   the file that includes them;
//! - `@id` conditional lines and `$NAME=value` definitions are keepalived features rvs does
//!   not implement: they are reported as warnings and the line is skipped.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Deepest include nesting accepted (keepalived's limit is also small; this catches loops).
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// Most files one configuration may pull in through includes.
pub const MAX_FILES: usize = 4096;

/// Deepest block nesting accepted.
pub const MAX_BLOCK_DEPTH: usize = 64;

/// Where something is in the configuration: file, line and column (both from 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    /// The file, as it was named (the main file) or found (an included one).
    pub file: Arc<Path>,
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

impl Loc {
    /// `file:line`, the short form used in warnings and logs.
    pub fn file_line(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A syntax error (or an unreadable file), with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{loc}: {message}")]
pub struct SyntaxError {
    /// Where.
    pub loc: Loc,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// How much a warning matters to whoever switches from keepalived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum WarningKind {
    /// keepalived complains about it too (its `--config-test` fails), or rvs does not run
    /// something keepalived would: `rvsd --check-config` fails.
    #[default]
    Problem,
    /// Nothing that changes traffic: the file still runs as it does under keepalived.
    Note,
}

/// Something that was read but is not acted upon, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where.
    pub loc: Loc,
    /// What and why.
    pub message: String,
    /// Whether it fails `--check-config`.
    pub kind: WarningKind,
}

impl Warning {
    /// A warning that fails `--check-config` (see [`WarningKind::Problem`]).
    pub fn problem(loc: &Loc, message: impl Into<String>) -> Warning {
        Warning {
            loc: loc.clone(),
            message: message.into(),
            kind: WarningKind::Problem,
        }
    }

    /// A note that does not change what runs (see [`WarningKind::Note`]).
    pub fn note(loc: &Loc, message: impl Into<String>) -> Warning {
        Warning {
            loc: loc.clone(),
            message: message.into(),
            kind: WarningKind::Note,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            WarningKind::Problem => "warning",
            WarningKind::Note => "note",
        };
        write!(f, "{}: {what}: {}", self.loc, self.message)
    }
}

/// One word of a line, after quote and escape processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The text.
    pub text: String,
    /// Where it starts.
    pub loc: Loc,
}

impl Word {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A statement: a keyword, its arguments on the same line, and the block that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The first word.
    pub keyword: Word,
    /// The other words of the line (up to a `{`).
    pub args: Vec<Word>,
    /// The `{ ... }` block, if one follows.
    pub block: Option<Vec<Node>>,
}

impl Node {
    /// Where the statement starts.
    pub fn loc(&self) -> &Loc {
        &self.keyword.loc
    }

    /// The keyword's text.
    pub fn name(&self) -> &str {
        &self.keyword.text
    }

    /// The block's statements (empty when there is no block).
    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// A lexical token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Word),
    Open(Loc),
    Close(Loc),
    /// End of a line (statements end here unless the next line opens their block).
    Eol,
}

/// The tree of a whole configuration and what was noticed while reading it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    /// Top-level statements, includes already spliced in.
    pub nodes: Vec<Node>,
    /// Warnings (conditional lines, parameters, empty includes…).
    pub warnings: Vec<Warning>,
    /// Every file that was read, the main one first.
    pub files: Vec<PathBuf>,
}

/// Reads `path` and everything it includes into a [`Document`].
pub fn parse_file(path: &Path) -> Result<Document, SyntaxError> {
    let mut reader = Reader::default();
    let file: Arc<Path> = Arc::from(path);
    let bytes = std::fs::read(path).map_err(|e| SyntaxError {
        loc: Loc {
            file: file.clone(),
            line: 0,
            column: 0,
        },
        message: format!("cannot read the configuration: {e}"),
    })?;
    // keepalived reads bytes: non-UTF-8 text (a Latin-1 comment) is no error there.
    let text = String::from_utf8_lossy(&bytes);
    reader.files.push(path.to_path_buf());
    reader.lex(&file, &text, 0)?;
    reader.finish()
}

/// Reads `text` as if it were the file `name` (includes are resolved relative to `name`'s
/// directory).
pub fn parse_str(name: &Path, text: &str) -> Result<Document, SyntaxError> {
    let mut reader = Reader::default();
    reader.files.push(name.to_path_buf());
    reader.lex(&Arc::from(name), text, 0)?;
    reader.finish()
}

#[derive(Default)]
struct Reader {
    toks: Vec<Tok>,
    warnings: Vec<Warning>,
    files: Vec<PathBuf>,
}

impl Reader {
    /// Tokenises `text` of `file` (at include depth `depth`), splicing in includes.
    fn lex(&mut self, file: &Arc<Path>, text: &str, depth: usize) -> Result<(), SyntaxError> {
        for (index, line) in text.lines().enumerate() {
            let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let loc_at = |column: usize| Loc {
                file: file.clone(),
                line: line_no,
                column: u32::try_from(column + 1).unwrap_or(u32::MAX),
            };
            let toks = lex_line(line, &loc_at)?;
            let Some(Tok::Word(first)) = toks.first() else {
                self.toks.extend(toks);
                self.toks.push(Tok::Eol);
                continue;
            };
            if first.text.starts_with('@') && first.loc.column == first_column(line) {
                self.warnings.push(Warning {
                    loc: first.loc.clone(),
                    message: format!(
                        "conditional configuration (`{}`) is not supported by rvs; the line is ignored",
                        first.text
                    ),
                kind: WarningKind::Problem,
            });
                self.toks.push(Tok::Eol);
                continue;
            }
            if first.text.starts_with('$') && first.text.contains('=') {
                self.warnings.push(Warning {
                    loc: first.loc.clone(),
                    message: "parameter definitions (`$NAME=value`) are not supported by rvs; the line is ignored"
                        .into(),
                kind: WarningKind::Problem,
            });
                self.toks.push(Tok::Eol);
                continue;
            }
            if matches!(
                first.text.as_str(),
                "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
            ) {
                let loc = first.loc.clone();
                let patterns: Vec<&Word> = toks[1..]
                    .iter()
                    .filter_map(|t| match t {
                        Tok::Word(w) => Some(w),
                        _ => None,
                    })
                    .collect();
                if patterns.len() != 1 || toks.len() != 2 {
                    return Err(SyntaxError {
                        loc,
                        message: format!("`{}` takes exactly one file name or pattern", first.text),
                    });
                }
                self.include(file, patterns[0], depth)?;
                self.toks.push(Tok::Eol);
                continue;
            }
            for tok in &toks {
                if let Tok::Word(w) = tok
                    && w.text.contains('$')
                    && w.text.contains("${")
                {
                    self.warnings.push(Warning {
                        loc: w.loc.clone(),
                        message: format!(
                            "`{}` looks like a parameter substitution, which rvs does not support; it is used literally",
                            w.text
                        ),
                kind: WarningKind::Problem,
            });
                }
            }
            self.toks.extend(toks);
            self.toks.push(Tok::Eol);
        }
        Ok(())
    }

    /// Reads the files `pattern` matches, relative to the directory of `from`.
    fn include(
        &mut self,
        from: &Arc<Path>,
        pattern: &Word,
        depth: usize,
    ) -> Result<(), SyntaxError> {
        let loc = pattern.loc.clone();
        if depth + 1 > MAX_INCLUDE_DEPTH {
            return Err(SyntaxError {
                loc,
                message: format!(
                    "includes nest deeper than {MAX_INCLUDE_DEPTH} levels (does a file include itself?)"
                ),
            });
        }
        if pattern.text.contains('{') {
            self.warnings.push(Warning {
                loc: loc.clone(),
                message: "brace expansion in include patterns is not supported by rvs; the pattern is used as a plain glob"
                    .into(),
                kind: WarningKind::Problem,
            });
        }
        let base = from.parent().unwrap_or(Path::new("."));
        let full = if Path::new(&pattern.text).is_absolute() {
            PathBuf::from(&pattern.text)
        } else {
            base.join(&pattern.text)
        };
        let full_text = full.to_string_lossy().into_owned();
        let paths = glob::glob(&full_text).map_err(|e| SyntaxError {
            loc: loc.clone(),
            message: format!("bad include pattern {:?}: {e}", pattern.text),
        })?;
        let mut matched: Vec<PathBuf> = Vec::new();
        for entry in paths {
            match entry {
                Ok(p) if p.is_file() => matched.push(p),
                Ok(_) => {}
                Err(e) => {
                    return Err(SyntaxError {
                        loc,
                        message: format!("cannot read included path: {e}"),
                    });
                }
            }
        }
        matched.sort();
        if matched.is_empty() {
            // keepalived's plain `include` does not fail on a missing file either.
            self.warnings.push(Warning {
                loc,
                message: format!("include {:?} matches no file", pattern.text),
                kind: WarningKind::Problem,
            });
            return Ok(());
        }
        for path in matched {
            if self.files.len() >= MAX_FILES {
                return Err(SyntaxError {
                    loc,
                    message: format!("more than {MAX_FILES} files are included"),
                });
            }
            let bytes = std::fs::read(&path).map_err(|e| SyntaxError {
                loc: loc.clone(),
                message: format!("cannot read included file {}: {e}", path.display()),
            })?;
            let text = String::from_utf8_lossy(&bytes);
            self.files.push(path.clone());
            let file: Arc<Path> = Arc::from(path.as_path());
            self.lex(&file, &text, depth + 1)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Document, SyntaxError> {
        let mut parser = Parser {
            toks: self.toks,
            pos: 0,
        };
        let nodes = parser.block(None, 0)?;
        Ok(Document {
            nodes,
            warnings: self.warnings,
            files: self.files,
        })
    }
}

/// The column (0-based, in characters) of the first non-blank character of `line`.
fn first_column(line: &str) -> u32 {
    let n = line.chars().take_while(|c| *c == ' ' || *c == '\t').count();
    u32::try_from(n + 1).unwrap_or(u32::MAX)
}

/// Splits one line into words and braces, dropping comments.
fn lex_line(line: &str, loc_at: &dyn Fn(usize) -> Loc) -> Result<Vec<Tok>, SyntaxError> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' || c == '\t' || c == '\r' {
            i += 1;
            continue;
        }
        if c == '#' || c == '!' {
            break;
        }
        if c == '{' {
            toks.push(Tok::Open(loc_at(i)));
            i += 1;
            continue;
        }
        if c == '}' {
            toks.push(Tok::Close(loc_at(i)));
            i += 1;
            continue;
        }
        // A word: runs to a blank, a brace or a comment outside quotes.
        let start = i;
        let mut text = String::new();
        let mut quote: Option<(char, usize)> = None;
        while i < chars.len() {
            let c = chars[i];
            if let Some((q, _)) = quote {
                if c == q {
                    quote = None;
                    i += 1;
                } else if c == '\\' {
                    i = escape(&chars, i, &mut text, loc_at)?;
                } else {
                    text.push(c);
                    i += 1;
                }
                continue;
            }
            match c {
                ' ' | '\t' | '\r' | '{' | '}' | '#' | '!' => break,
                '"' | '\'' => {
                    quote = Some((c, i));
                    i += 1;
                }
                '\\' => i = escape(&chars, i, &mut text, loc_at)?,
                // `${NAME}` is keepalived parameter syntax, not a block: keep it in the word.
                '$' if chars.get(i + 1) == Some(&'{') => {
                    let end = chars[i..]
                        .iter()
                        .position(|&c| c == '}')
                        .map_or(chars.len(), |p| i + p + 1);
                    text.extend(&chars[i..end]);
                    i = end;
                }
                _ => {
                    text.push(c);
                    i += 1;
                }
            }
        }
        if let Some((q, at)) = quote {
            return Err(SyntaxError {
                loc: loc_at(at),
                message: format!("unterminated quoted string: add the closing {q}"),
            });
        }
        toks.push(Tok::Word(Word {
            text,
            loc: loc_at(start),
        }));
    }
    Ok(toks)
}

/// Decodes the escape at `chars[i]` (a backslash) into `out`; returns the next index.
fn escape(
    chars: &[char],
    i: usize,
    out: &mut String,
    loc_at: &dyn Fn(usize) -> Loc,
) -> Result<usize, SyntaxError> {
    let Some(&c) = chars.get(i + 1) else {
        return Err(SyntaxError {
            loc: loc_at(i),
            message: "a backslash ends the line; escape it as \\\\ or remove it".into(),
        });
    };
    let mut j = i + 2;
    let decoded = match c {
        'x' if chars.get(j).is_some_and(char::is_ascii_hexdigit) => {
            let mut v: u32 = 0;
            while let Some(d) = chars.get(j).and_then(|c| c.to_digit(16)) {
                // keepalived keeps the low byte of an overlong sequence.
                v = ((v << 4) | d) & 0xff;
                j += 1;
            }
            char::from_u32(v).unwrap_or('?')
        }
        'c' if j < chars.len() => {
            let v = (chars[j] as u32) & 0x1f;
            j += 1;
            char::from_u32(v).unwrap_or('?')
        }
        '0'..='7' => {
            let mut v = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match chars.get(j).and_then(|c| c.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        j += 1;
                    }
                    None => break,
                }
            }
            char::from_u32(v & 0xff).unwrap_or('?')
        }
        'a' => '\u{7}',
        'b' => '\u{8}',
        'E' => '\u{1b}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        other => other,
    };
    out.push(decoded);
    Ok(j)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    /// Parses statements until the `}` that closes the block opened at `open` (or the end of
    /// input at top level).
    fn block(&mut self, open: Option<&Loc>, depth: usize) -> Result<Vec<Node>, SyntaxError> {
        if depth > MAX_BLOCK_DEPTH {
            let loc = open.cloned().unwrap_or_else(|| self.end_loc());
            return Err(SyntaxError {
                loc,
                message: format!("blocks nest deeper than {MAX_BLOCK_DEPTH} levels"),
            });
        }
        let mut nodes = Vec::new();
        loop {
            let Some(tok) = self.peek().cloned() else {
                return match open {
                    None => Ok(nodes),
                    Some(loc) => Err(SyntaxError {
                        loc: loc.clone(),
                        message: "this `{` is never closed: add the missing `}`".into(),
                    }),
                };
            };
            self.pos += 1;
            match tok {
                Tok::Eol => {}
                Tok::Close(loc) => {
                    if open.is_none() {
                        return Err(SyntaxError {
                            loc,
                            message: "`}` without a matching `{`: remove it or add the `{`".into(),
                        });
                    }
                    return Ok(nodes);
                }
                Tok::Open(loc) => {
                    return Err(SyntaxError {
                        loc,
                        message: "`{` without a keyword before it".into(),
                    });
                }
                Tok::Word(keyword) => {
                    let mut args = Vec::new();
                    while let Some(Tok::Word(w)) = self.peek() {
                        args.push(w.clone());
                        self.pos += 1;
                    }
                    // A block opens on this line, or on the next non-empty line.
                    let mut look = self.pos;
                    while matches!(self.toks.get(look), Some(Tok::Eol)) {
                        look += 1;
                    }
                    let block = if let Some(Tok::Open(loc)) = self.toks.get(look).cloned() {
                        self.pos = look + 1;
                        Some(self.block(Some(&loc), depth + 1)?)
                    } else {
                        None
                    };
                    nodes.push(Node {
                        keyword,
                        args,
                        block,
                    });
                }
            }
        }
    }

    fn end_loc(&self) -> Loc {
        self.toks
            .iter()
            .rev()
            .find_map(|t| match t {
                Tok::Word(w) => Some(w.loc.clone()),
                Tok::Open(l) | Tok::Close(l) => Some(l.clone()),
                Tok::Eol => None,
            })
            .unwrap_or(Loc {
                file: Arc::from(Path::new("")),
                line: 0,
                column: 0,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Document {
        parse_str(Path::new("t.conf"), text).expect("parses")
    }

    fn err(text: &str) -> String {
        parse_str(Path::new("t.conf"), text)
            .expect_err("must fail")
            .to_string()
    }

    #[test]
    fn words_blocks_and_locations() {
        let d = parse("a 1 2 {\n  b x\n  c { d }\n}\n e\n");
        assert_eq!(d.nodes.len(), 2);
        let a = &d.nodes[0];
        assert_eq!(a.name(), "a");
        assert_eq!(a.args.len(), 2);
        assert_eq!((a.loc().line, a.loc().column), (1, 1));
        let kids = a.children();
        assert_eq!(kids[0].name(), "b");
        assert_eq!((kids[0].loc().line, kids[0].loc().column), (2, 3));
        assert_eq!(kids[1].children()[0].name(), "d");
        assert_eq!(
            (
                kids[1].children()[0].loc().line,
                kids[1].children()[0].loc().column
            ),
            (3, 7)
        );
        assert_eq!(d.nodes[1].loc().column, 2);
    }

    #[test]
    fn brace_on_next_line_and_glued_braces() {
        let d = parse("a\n\n{\nb}\nc{d 1}e\n");
        assert_eq!(d.nodes[0].children()[0].name(), "b");
        assert_eq!(d.nodes[1].name(), "c");
        assert_eq!(d.nodes[1].children()[0].args[0].text, "1");
        assert_eq!(d.nodes[2].name(), "e");
    }

    #[test]
    fn comments_quotes_and_escapes() {
        let d = parse(
            "a \"x # y\" 'p q' # comment\n! whole line\nb ab\"c d\"e z!c\nc \"\\x41\\t\\101\\\"\"\n",
        );
        let a = &d.nodes[0];
        assert_eq!(a.args[0].text, "x # y");
        assert_eq!(a.args[1].text, "p q");
        assert_eq!(a.args.len(), 2);
        assert_eq!(d.nodes[1].args[0].text, "abc de");
        assert_eq!(d.nodes[1].args[1].text, "z");
        assert_eq!(d.nodes[2].args[0].text, "A\tA\"");
        assert_eq!(d.nodes.len(), 3);
    }

    #[test]
    fn located_errors() {
        assert_eq!(
            err("a {\n b\n"),
            "t.conf:1:3: this `{` is never closed: add the missing `}`"
        );
        assert_eq!(
            err("a\n}\n"),
            "t.conf:2:1: `}` without a matching `{`: remove it or add the `{`"
        );
        assert_eq!(
            err("x\n  { {\n"),
            "t.conf:2:5: `{` without a keyword before it"
        );
        assert_eq!(
            err("a \"open\n"),
            "t.conf:1:3: unterminated quoted string: add the closing \""
        );
        assert_eq!(
            err("a b\\"),
            "t.conf:1:4: a backslash ends the line; escape it as \\\\ or remove it"
        );
    }

    #[test]
    fn conditionals_and_parameters_warn() {
        let d = parse("@main router_id x\n$X=1\nrouter_id ${X}\n");
        assert_eq!(d.nodes.len(), 1);
        assert_eq!(d.warnings.len(), 3);
        assert!(
            d.warnings[0]
                .to_string()
                .starts_with("t.conf:1:1: warning: conditional")
        );
        assert_eq!(d.warnings[1].loc.line, 2);
        assert_eq!(d.warnings[2].loc.line, 3);
    }
}
