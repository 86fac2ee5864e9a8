//! `-R`: reading rules the way ipvsadm reads them, and turning them into one batch.
//!
//! ipvsadm's reader (`config_stream_read`) splits each line into words at spaces, tabs and
//! carriage returns, drops every word that is exactly `ipvsadm` (so `ipvsadm -A …` lines
//! work), skips empty lines, and knows no comments: a `#` is a word like any other, which
//! ipvsadm then refuses. Its quirks at the end of the input are kept too: a last line
//! without a newline is read, unless it ends in two or more blanks.
//!
//! ipvsadm applies each line as it reads it: a line it cannot parse stops it (the lines
//! before stay applied) and a change the kernel refuses is reported and skipped. rvsadm
//! parses every line first and sends all the changes as one atomic batch: either every
//! line is applied or none is, and the error names the line.

use rvs_api::Op;

use crate::{Failure, Invocation, Resolver, args};

/// One line of restore input that holds words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number of the line's first word.
    pub number: usize,
    /// Its words, without `ipvsadm`.
    pub words: Vec<String>,
}

impl Line {
    /// The words joined by spaces, for messages.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Splits restore input into lines of words exactly as ipvsadm's `config_stream_read`
/// loop does (lines with no words left are dropped, as ipvsadm skips them).
pub fn read_lines(input: &[u8]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut pos = 0;
    let mut line_no = 1;
    'records: loop {
        // One call of config_stream_read.
        let mut words: Vec<String> = Vec::new();
        let mut ntoken = 0;
        let mut first_line = None;
        loop {
            if pos >= input.len() {
                // fscanf hits EOF before a conversion.
                if ntoken == 0 {
                    break 'records;
                }
                lines.push(Line {
                    number: first_line.unwrap_or(line_no),
                    words,
                });
                break 'records;
            }
            if is_sep(input[pos]) {
                // fscanf converts nothing (status 0): skip blanks up to the end of the line.
                loop {
                    let Some(&c) = input.get(pos) else {
                        // EOF while skipping blanks: the record is dropped, reading stops.
                        break 'records;
                    };
                    pos += 1;
                    match c {
                        b'\n' => {
                            line_no += 1;
                            if !words.is_empty() {
                                lines.push(Line {
                                    number: first_line.unwrap_or(line_no - 1),
                                    words,
                                });
                            }
                            continue 'records;
                        }
                        b' ' | b'\t' | b'\r' => {}
                        _ => {
                            pos -= 1;
                            break;
                        }
                    }
                }
                continue;
            }
            // A word, then (if any) the one separator after it.
            let start = pos;
            while pos < input.len() && !is_sep(input[pos]) {
                pos += 1;
            }
            let word = String::from_utf8_lossy(&input[start..pos]).into_owned();
            if word != "ipvsadm" {
                ntoken += 1;
                first_line.get_or_insert(line_no);
                words.push(word);
            }
            if let Some(&tail) = input.get(pos) {
                pos += 1;
                if tail == b'\n' {
                    line_no += 1;
                    if !words.is_empty() {
                        lines.push(Line {
                            number: first_line.unwrap_or(line_no - 1),
                            words,
                        });
                    }
                    continue 'records;
                }
            }
        }
    }
    lines
}

/// The changes of a restore input, each with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The ops, in input order.
    pub ops: Vec<Op>,
    /// For each op, its line.
    pub lines: Vec<Line>,
}

fn line_note(line: &Line) -> String {
    format!(
        "rvsadm: restore input line {}: `{}'; nothing was applied\n",
        line.number,
        line.text()
    )
}

/// Parses every line of `input` as ipvsadm command line arguments (`program` stands in for
/// `argv[0]` in messages). The first line that ipvsadm would refuse fails the whole input,
/// as does a line that is not a change (a listing, `-S`, `-h`): in one atomic batch a
/// listing would show the state before the batch, which is not what it means in ipvsadm.
pub fn parse_batch(input: &[u8], program: &str, resolver: &dyn Resolver) -> Result<Batch, Failure> {
    let mut batch = Batch {
        ops: Vec::new(),
        lines: Vec::new(),
    };
    for line in read_lines(input) {
        let argv: Vec<String> = std::iter::once(program.to_string())
            .chain(line.words.iter().cloned())
            .collect();
        match args::parse(&argv, resolver, true, false) {
            Ok(Invocation::Apply(op)) => {
                batch.ops.push(op);
                batch.lines.push(line);
            }
            Ok(_) => {
                return Err(Failure {
                    stderr: format!(
                        "only changes (-A -E -D -C -a -e -d -Z --set) can be restored\n{}",
                        line_note(&line)
                    ),
                    code: 2,
                });
            }
            Err(mut f) => {
                f.stderr.push_str(&line_note(&line));
                return Err(f);
            }
        }
    }
    Ok(batch)
}

/// The note added to rvsd's refusal of a batch op, naming the line it came from.
pub fn failed_line_note(batch: &Batch, op: usize) -> Option<String> {
    batch.lines.get(op).map(line_note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(input: &str) -> Vec<(usize, String)> {
        read_lines(input.as_bytes())
            .into_iter()
            .map(|l| (l.number, l.text()))
            .collect()
    }

    #[test]
    fn reads_like_config_stream_read() {
        assert_eq!(
            words("ipvsadm -A -t 1.2.3.4:80\n\n  \t\n-a\t-t x  -r y ipvsadm -w 3\r\n"),
            vec![
                (1, "-A -t 1.2.3.4:80".to_string()),
                (4, "-a -t x -r y -w 3".to_string())
            ]
        );
        // No comments: '#' is a word.
        assert_eq!(words("# c\n"), vec![(1, "# c".to_string())]);
        // A last line without newline is read...
        assert_eq!(words("-C"), vec![(1, "-C".to_string())]);
        assert_eq!(words("-C "), vec![(1, "-C".to_string())]);
        // ...unless it ends in two blanks: then ipvsadm's reader drops it.
        assert_eq!(words("-Z\n-C  "), vec![(1, "-Z".to_string())]);
        assert_eq!(words(""), vec![]);
        assert_eq!(words("ipvsadm\n-C\n"), vec![(2, "-C".to_string())]);
    }
}
