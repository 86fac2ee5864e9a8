//! A command-line scanner that behaves like popt 1.19 (the option library ipvsadm is built
//! with), for the subset of popt that ipvsadm uses.
//!
//! Scripts depend on popt's quirks, so they are reproduced: short options cluster (`-Ln`) and
//! take their argument from the rest of the cluster (`-w3`, `-w=3`) or the next word; long
//! options take `--opt=value` or the next word; an optional argument (`-p [timeout]`) is taken
//! from the next word only when it does not start with `-`; words that are not options are
//! collected as "leftovers" wherever they appear, and `--` makes everything after it a
//! leftover. A single dash never introduces a long option (`-list` is `-l -i -s t`).
//! popt's `!#:+` argument expansion and its aliases and config files are not reproduced
//! (ipvsadm does not use the last two).
//!
//! popt is a C library with no Rust equivalent; this is the ~100 lines of its option loop
//! that ipvsadm's behaviour depends on.

/// Whether an option takes an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A flag (`POPT_ARG_NONE`).
    None,
    /// A required argument (`POPT_ARG_STRING`).
    Required,
    /// An optional argument (`POPT_ARGFLAG_OPTIONAL`).
    Optional,
}

/// One entry of an option table.
#[derive(Debug, Clone, Copy)]
pub struct OptSpec<T> {
    /// Long name, without the dashes.
    pub long: Option<&'static str>,
    /// Short name.
    pub short: Option<u8>,
    /// Argument.
    pub arg: ArgKind,
    /// What the scanner returns for it.
    pub tag: T,
}

/// popt's error codes that the scanner can return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoptError {
    /// `POPT_ERROR_NOARG`.
    NoArg,
    /// `POPT_ERROR_UNWANTEDARG`.
    UnwantedArg,
    /// `POPT_ERROR_BADOPT`.
    BadOpt,
}

impl PoptError {
    /// `poptStrerror`'s text.
    pub fn text(self) -> &'static str {
        match self {
            PoptError::NoArg => "missing argument",
            PoptError::UnwantedArg => "option does not take an argument",
            PoptError::BadOpt => "unknown option",
        }
    }
}

/// The scanner over one argument vector (`argv[0]` is the program name).
#[derive(Debug)]
pub struct Popt<'a, T> {
    table: &'a [OptSpec<T>],
    argv: &'a [String],
    next: usize,
    /// The unread rest of a short-option cluster: (argv index, byte offset).
    next_char: Option<(usize, usize)>,
    rest_leftover: bool,
    posix_me_harder: bool,
    leftovers: Vec<String>,
    next_leftover: usize,
}

impl<'a, T: Copy> Popt<'a, T> {
    /// A scanner of `argv` (from index 1) against `table`. `posix_me_harder` is popt's
    /// reaction to `POSIXLY_CORRECT`: the first non-option word ends option processing.
    pub fn new(table: &'a [OptSpec<T>], argv: &'a [String], posix_me_harder: bool) -> Self {
        Self {
            table,
            argv,
            next: 1,
            next_char: None,
            rest_leftover: false,
            posix_me_harder,
            leftovers: Vec::new(),
            next_leftover: 0,
        }
    }

    fn find_long(&self, name: &[u8]) -> Option<&'a OptSpec<T>> {
        self.table
            .iter()
            .find(|o| o.long.is_some_and(|l| l.as_bytes() == name))
    }

    fn find_short(&self, c: u8) -> Option<&'a OptSpec<T>> {
        self.table.iter().find(|o| o.short == Some(c))
    }

    /// `poptGetNextOpt`: the next option and its argument, `None` when the words are used
    /// up, or an error.
    pub fn next_opt(&mut self) -> Option<Result<(T, Option<String>), PoptError>> {
        loop {
            let mut long_arg: Option<String> = None;
            let mut opt: Option<&'a OptSpec<T>> = None;
            if self.next_char.is_none() && self.next >= self.argv.len() {
                return None;
            }
            if self.next_char.is_none() {
                let index = self.next;
                let word = self.argv[index].as_bytes();
                self.next += 1;
                if self.rest_leftover || word.first() != Some(&b'-') || word == b"-" {
                    if self.posix_me_harder {
                        self.rest_leftover = true;
                    }
                    self.leftovers.push(self.argv[index].clone());
                    continue;
                }
                if word == b"--" {
                    self.rest_leftover = true;
                    continue;
                }
                let (name, one_dash) = match word.get(1) {
                    Some(b'-') => (&word[2..], false),
                    _ => (&word[1..], true),
                };
                let end = name.iter().position(|&b| b == b'=').unwrap_or(name.len());
                if !one_dash {
                    // No option of ipvsadm's table is single-dash long (POPT_ARGFLAG_ONEDASH),
                    // so only `--name` looks up long names.
                    opt = self.find_long(&name[..end]);
                    if opt.is_none() {
                        return Some(Err(PoptError::BadOpt));
                    }
                    if end < name.len() {
                        long_arg = Some(String::from_utf8_lossy(&name[end + 1..]).into_owned());
                    }
                } else {
                    self.next_char = Some((index, 1));
                }
            }
            if let Some((index, offset)) = self.next_char.take() {
                let word = self.argv[index].as_bytes();
                let c = word[offset];
                opt = self.find_short(c);
                if opt.is_none() {
                    return Some(Err(PoptError::BadOpt));
                }
                if offset + 1 < word.len() {
                    self.next_char = Some((index, offset + 1));
                }
            }
            let opt = opt?;
            if opt.arg == ArgKind::None {
                let rest_is_eq = self
                    .next_char
                    .is_some_and(|(i, o)| self.argv[i].as_bytes()[o] == b'=');
                if long_arg.is_some() || rest_is_eq {
                    return Some(Err(PoptError::UnwantedArg));
                }
                return Some(Ok((opt.tag, None)));
            }
            let arg = if let Some(a) = long_arg {
                Some(a)
            } else if let Some((index, offset)) = self.next_char.take() {
                let rest = &self.argv[index].as_bytes()[offset..];
                let rest = rest.strip_prefix(b"=").unwrap_or(rest);
                Some(String::from_utf8_lossy(rest).into_owned())
            } else if self.next >= self.argv.len() {
                if opt.arg != ArgKind::Optional {
                    return Some(Err(PoptError::NoArg));
                }
                None
            } else if opt.arg == ArgKind::Optional && self.argv[self.next].starts_with('-') {
                None
            } else {
                self.next += 1;
                Some(self.argv[self.next - 1].clone())
            };
            return Some(Ok((opt.tag, arg)));
        }
    }

    /// `poptBadOption`: the word the last error was found in.
    pub fn bad_option(&self) -> &str {
        self.argv
            .get(self.next.saturating_sub(1))
            .map(String::as_str)
            .unwrap_or("")
    }

    /// `poptGetArg`: the next leftover word.
    pub fn next_arg(&mut self) -> Option<String> {
        let arg = self.leftovers.get(self.next_leftover).cloned();
        if arg.is_some() {
            self.next_leftover += 1;
        }
        arg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum T {
        L,
        N,
        W,
        P,
    }

    const TABLE: &[OptSpec<T>] = &[
        OptSpec {
            long: Some("list"),
            short: Some(b'L'),
            arg: ArgKind::None,
            tag: T::L,
        },
        OptSpec {
            long: Some("numeric"),
            short: Some(b'n'),
            arg: ArgKind::None,
            tag: T::N,
        },
        OptSpec {
            long: Some("weight"),
            short: Some(b'w'),
            arg: ArgKind::Required,
            tag: T::W,
        },
        OptSpec {
            long: Some("persistent"),
            short: Some(b'p'),
            arg: ArgKind::Optional,
            tag: T::P,
        },
    ];

    type Scanned = Vec<Result<(T, Option<String>), PoptError>>;

    fn scan(args: &[&str]) -> (Scanned, Vec<String>) {
        let argv: Vec<String> = std::iter::once("prog")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        let mut p = Popt::new(TABLE, &argv, false);
        let mut out = Vec::new();
        while let Some(r) = p.next_opt() {
            let err = r.is_err();
            out.push(r);
            if err {
                break;
            }
        }
        let mut left = Vec::new();
        while let Some(a) = p.next_arg() {
            left.push(a);
        }
        (out, left)
    }

    fn ok(t: T, a: Option<&str>) -> Result<(T, Option<String>), PoptError> {
        Ok((t, a.map(String::from)))
    }

    #[test]
    fn clusters_and_attached_arguments() {
        assert_eq!(scan(&["-Ln"]).0, vec![ok(T::L, None), ok(T::N, None)]);
        assert_eq!(scan(&["-Lw3"]).0, vec![ok(T::L, None), ok(T::W, Some("3"))]);
        assert_eq!(scan(&["-w=3"]).0, vec![ok(T::W, Some("3"))]);
        assert_eq!(scan(&["-w", "-1"]).0, vec![ok(T::W, Some("-1"))]);
        assert_eq!(scan(&["--weight=4"]).0, vec![ok(T::W, Some("4"))]);
        assert_eq!(scan(&["--weight", "5"]).0, vec![ok(T::W, Some("5"))]);
        assert_eq!(scan(&["--weight="]).0, vec![ok(T::W, Some(""))]);
    }

    #[test]
    fn optional_arguments() {
        assert_eq!(scan(&["-p", "60"]).0, vec![ok(T::P, Some("60"))]);
        assert_eq!(scan(&["-p", "-n"]).0, vec![ok(T::P, None), ok(T::N, None)]);
        assert_eq!(scan(&["-p"]).0, vec![ok(T::P, None)]);
        assert_eq!(scan(&["-p60"]).0, vec![ok(T::P, Some("60"))]);
        assert_eq!(scan(&["--persistent"]).0, vec![ok(T::P, None)]);
    }

    #[test]
    fn errors_and_leftovers() {
        assert_eq!(scan(&["-w"]).0, vec![Err(PoptError::NoArg)]);
        assert_eq!(scan(&["-x"]).0, vec![Err(PoptError::BadOpt)]);
        assert_eq!(scan(&["--bogus"]).0, vec![Err(PoptError::BadOpt)]);
        assert_eq!(
            scan(&["-Lnx"]).0,
            vec![ok(T::L, None), ok(T::N, None), Err(PoptError::BadOpt)]
        );
        assert_eq!(scan(&["--list=x"]).0, vec![Err(PoptError::UnwantedArg)]);
        assert_eq!(scan(&["-L="]).0, vec![Err(PoptError::UnwantedArg)]);
        let (opts, left) = scan(&["a", "-L", "-", "b", "--", "-n"]);
        assert_eq!(opts, vec![ok(T::L, None)]);
        assert_eq!(left, vec!["a", "-", "b", "-n"]);
    }
}
