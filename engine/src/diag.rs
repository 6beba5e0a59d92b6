//! Validation diagnostics that point at `file:line:column` and quote the line.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::yaml::Span;

#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// A warning does not stop the pipeline from loading (an old spelling, say).
    pub warning: bool,
    pub file: PathBuf,
    pub span: Span,
    pub message: String,
    /// The source line the span points into, quoted under the message.
    pub snippet: Option<String>,
    /// What would be valid instead.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(source: &Source, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            warning: false,
            file: source.path.clone(),
            span,
            message: message.into(),
            snippet: source.line(span.line).map(str::to_owned),
            help: None,
        }
    }

    /// A diagnostic that does not stop the pipeline from loading.
    pub fn warning(source: &Source, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            warning: true,
            ..Diagnostic::new(source, span, message)
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {}:{}: {}",
            if self.warning { "warning" } else { "error" },
            self.file.display(),
            self.span,
            self.message
        )?;
        if let Some(line) = &self.snippet {
            let num = self.span.line.to_string();
            let pad = " ".repeat(num.len());
            writeln!(f, "{pad} |")?;
            writeln!(f, "{num} | {line}")?;
            let caret_pad: String = line
                .chars()
                .take(self.span.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{pad} | {caret_pad}^")?;
        }
        if let Some(help) = &self.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }
}

/// All problems found in one pipeline file; validation reports them together.
#[derive(Debug, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            write!(f, "{d}")?;
        }
        let n = self.0.iter().filter(|d| !d.warning).count();
        write!(
            f,
            "{n} error{} in {}",
            if n == 1 { "" } else { "s" },
            self.0
                .first()
                .map_or(String::new(), |d| d.file.display().to_string())
        )
    }
}

impl std::error::Error for Diagnostics {}

/// The text of a pipeline file with its path, for quoting lines in diagnostics.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(path: &Path, text: String) -> Self {
        Source {
            path: path.to_path_buf(),
            text,
        }
    }

    pub fn line(&self, line: usize) -> Option<&str> {
        line.checked_sub(1).and_then(|i| self.text.lines().nth(i))
    }
}

/// The closest candidate by edit distance, for "did you mean" hints.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "expected one of `a`, `b`" style lists.
pub fn one_of<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let list: Vec<String> = items.into_iter().map(|s| format!("`{s}`")).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}
