//! Sanitising whole files as streams: plain text, JSON Lines and CSV.

use crate::sanitize::Sanitizer;
use std::io::{BufRead, Read, Write};

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Any text; findings never span lines.
    Text,
    /// One JSON value per line; string values are sanitised, everything else is kept
    /// byte for byte.
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
}

impl Format {
    /// `text`, `jsonl` or `csv`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" | "txt" => Some(Format::Text),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// What a run read and wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Lines (text, JSON Lines) or records (CSV, without the header).
    pub records: u64,
}

/// Errors; they name positions, never content.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: not JSON ({detail})")]
    Json { line: u64, detail: String },
    #[error("CSV: {0}")]
    Csv(String),
    #[error("--fields: {0}")]
    Fields(String),
}

/// Which values to sanitise: all (empty), or these keys / column names. For JSON a
/// field is a dotted path (`user.email`) and covers what is nested under it.
#[derive(Clone, Debug, Default)]
pub struct Fields(Vec<String>);

impl Fields {
    #[must_use]
    pub fn new(fields: Vec<String>) -> Self {
        Self(fields)
    }

    fn all(&self) -> bool {
        self.0.is_empty()
    }

    fn covers(&self, path: &str) -> bool {
        self.all()
            || self.0.iter().any(|f| {
                path == f
                    || path
                        .strip_prefix(f.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            })
    }
}

/// Largest text chunk held without a line break; a longer line is cut there.
const MAX_CHUNK: usize = 16 << 20;
/// Largest JSON line.
pub const MAX_JSON_LINE: usize = 64 << 20;

/// Sanitises `input` into `output`. `progress` is called with the bytes read so far.
pub fn run(
    format: Format,
    fields: &Fields,
    s: &mut Sanitizer,
    input: &mut dyn Read,
    output: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Totals, StreamError> {
    match format {
        Format::Text => {
            if !fields.all() {
                return Err(StreamError::Fields("plain text has no fields".into()));
            }
            text(s, input, output, progress)
        }
        Format::Jsonl => jsonl(fields, s, input, output, progress),
        Format::Csv => csv_(fields, s, input, output, progress),
    }
}

fn text(
    s: &mut Sanitizer,
    input: &mut dyn Read,
    output: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Totals, StreamError> {
    let mut t = Totals::default();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        t.bytes_in += n as u64;
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let cut = match memchr_last(&buf) {
            Some(i) => i + 1,
            None if buf.len() >= MAX_CHUNK => buf.len(),
            None => continue,
        };
        let body = buf.get(..cut).unwrap_or_default();
        t.records += bytecount(body);
        out.clear();
        s.sanitize(body, &mut out);
        output.write_all(&out)?;
        t.bytes_out += out.len() as u64;
        buf.drain(..cut);
        progress(t.bytes_in);
    }
    if !buf.is_empty() {
        t.records += 1;
        out.clear();
        s.sanitize(&buf, &mut out);
        output.write_all(&out)?;
        t.bytes_out += out.len() as u64;
    }
    progress(t.bytes_in);
    output.flush()?;
    Ok(t)
}

fn memchr_last(b: &[u8]) -> Option<usize> {
    b.iter().rposition(|&c| c == b'\n')
}

fn bytecount(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

fn jsonl(
    fields: &Fields,
    s: &mut Sanitizer,
    input: &mut dyn Read,
    output: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Totals, StreamError> {
    let mut t = Totals::default();
    let mut r = std::io::BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_JSON_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        t.records += 1;
        t.bytes_in += n as u64;
        if n > MAX_JSON_LINE {
            return Err(StreamError::Json {
                line: t.records,
                detail: "longer than 64 MiB".into(),
            });
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        out.clear();
        if body.iter().all(u8::is_ascii_whitespace) {
            out.extend_from_slice(&line);
        } else {
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| {
                StreamError::Json {
                    line: t.records,
                    detail: format!("column {}: {}", e.column(), category(&e)),
                }
            })?;
            json_value_strings(body, fields, s, &mut out);
            out.extend_from_slice(line.get(body.len()..).unwrap_or_default());
        }
        output.write_all(&out)?;
        t.bytes_out += out.len() as u64;
        if t.records % 4096 == 0 {
            progress(t.bytes_in);
        }
    }
    progress(t.bytes_in);
    output.flush()?;
    Ok(t)
}

/// What kind of JSON error, without the text around it.
fn category(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "unexpected end",
    }
}

/// Copies the (valid) JSON text `v` to `out` with the string values that `fields`
/// covers sanitised; keys, numbers and layout are kept byte for byte.
fn json_value_strings(v: &[u8], fields: &Fields, s: &mut Sanitizer, out: &mut Vec<u8>) {
    struct Frame {
        object: bool,
        expect_key: bool,
        /// Path of the container itself.
        base: String,
        /// Path of the value after the current key (objects).
        key: String,
    }
    fn value_path(stack: &[Frame]) -> &str {
        match stack.last() {
            Some(f) if f.object => &f.key,
            Some(f) => &f.base,
            None => "",
        }
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let b = v.get(i).copied().unwrap_or(0);
        match b {
            b'"' => {
                let mut e = i + 1;
                while e < v.len() {
                    match v.get(e) {
                        Some(b'\\') => e += 2,
                        Some(b'"') => break,
                        _ => e += 1,
                    }
                }
                let raw = v.get(i..=e).unwrap_or_default();
                if let Some(f) = stack.last_mut().filter(|f| f.object && f.expect_key) {
                    f.expect_key = false;
                    let k: String = serde_json::from_slice(raw).unwrap_or_default();
                    f.key = if f.base.is_empty() {
                        k
                    } else {
                        format!("{}.{k}", f.base)
                    };
                    out.extend_from_slice(raw);
                } else if fields.covers(value_path(&stack)) {
                    let text: String = serde_json::from_slice(raw).unwrap_or_default();
                    let clean = s.sanitize_str(&text);
                    if clean == text {
                        out.extend_from_slice(raw);
                    } else {
                        let _ = serde_json::to_writer(&mut *out, &clean);
                    }
                } else {
                    out.extend_from_slice(raw);
                }
                i = e + 1;
                continue;
            }
            b'{' | b'[' => {
                let base = value_path(&stack).to_owned();
                stack.push(Frame {
                    object: b == b'{',
                    expect_key: b == b'{',
                    key: base.clone(),
                    base,
                });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(f) = stack.last_mut().filter(|f| f.object) {
                    f.expect_key = true;
                }
            }
            _ => {}
        }
        out.push(b);
        i += 1;
    }
}

fn csv_(
    fields: &Fields,
    s: &mut Sanitizer,
    input: &mut dyn Read,
    output: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<Totals, StreamError> {
    let mut t = Totals::default();
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_reader(input);
    let headers = r
        .byte_headers()
        .map_err(|e| StreamError::Csv(e.to_string()))?
        .clone();
    let cols: Vec<bool> = headers
        .iter()
        .map(|h| fields.covers(&String::from_utf8_lossy(h)))
        .collect();
    for f in &fields.0 {
        if !headers.iter().any(|h| h == f.as_bytes()) {
            return Err(StreamError::Fields(format!("no column named {f:?}")));
        }
    }
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .buffer_capacity(1 << 20)
        .from_writer(CountingWriter {
            inner: output,
            n: 0,
        });
    w.write_byte_record(&headers)
        .map_err(|e| StreamError::Csv(e.to_string()))?;
    let mut rec = csv::ByteRecord::new();
    let mut clean = csv::ByteRecord::new();
    let mut buf = Vec::new();
    loop {
        match r.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(StreamError::Csv(e.to_string())),
        }
        t.records += 1;
        clean.clear();
        for (j, field) in rec.iter().enumerate() {
            if cols.get(j).copied().unwrap_or(fields.all()) {
                buf.clear();
                s.sanitize(field, &mut buf);
                clean.push_field(&buf);
            } else {
                clean.push_field(field);
            }
        }
        w.write_byte_record(&clean)
            .map_err(|e| StreamError::Csv(e.to_string()))?;
        if t.records % 4096 == 0 {
            progress(r.position().byte());
        }
    }
    t.bytes_in = r.position().byte();
    progress(t.bytes_in);
    let inner = w
        .into_inner()
        .map_err(|e| StreamError::Csv(e.to_string()))?;
    t.bytes_out = inner.n;
    inner.inner.flush()?;
    Ok(t)
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sanitize::Rules;

    fn go(format: Format, fields: &[&str], input: &str) -> Result<String, StreamError> {
        let mut s = Sanitizer::new(Rules::default());
        let mut out = Vec::new();
        let f = Fields::new(fields.iter().map(|s| (*s).to_owned()).collect());
        run(
            format,
            &f,
            &mut s,
            &mut input.as_bytes(),
            &mut out,
            &mut |_| {},
        )?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn jsonl_sanitises_string_values_and_keeps_the_rest() {
        let input = "{\"b\": \"mail a@example.org\", \"a\": 4111111111111111, \"n\": {\"ip\": [\"10.0.0.1\", 3]}}\n\n{\"a@example.org\":\"x\"}\n";
        assert_eq!(
            go(Format::Jsonl, &[], input).unwrap(),
            "{\"b\": \"mail [EMAIL]\", \"a\": 4111111111111111, \"n\": {\"ip\": [\"[IP]\", 3]}}\n\n{\"a@example.org\":\"x\"}\n"
        );
        // Only the named fields.
        assert_eq!(
            go(Format::Jsonl, &["n.ip"], input)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
            "{\"b\": \"mail a@example.org\", \"a\": 4111111111111111, \"n\": {\"ip\": [\"[IP]\", 3]}}"
        );
        let e = go(
            Format::Jsonl,
            &[],
            "{\"ok\":1}\n{\"secret\": \"123-45-6789\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        assert!(
            !e.to_string().contains("6789"),
            "errors carry no content: {e}"
        );
    }

    #[test]
    fn csv_sanitises_chosen_columns_and_quotes_properly() {
        let input =
            "name,contact,note\nAnn,\"a@example.org, +1 415 555 0132\",\"ssn 123-45-6789\"\n";
        assert_eq!(
            go(Format::Csv, &[], input).unwrap(),
            "name,contact,note\nAnn,\"[EMAIL], [PHONE]\",ssn [SSN]\n"
        );
        assert_eq!(
            go(Format::Csv, &["contact"], input).unwrap(),
            "name,contact,note\nAnn,\"[EMAIL], [PHONE]\",ssn 123-45-6789\n"
        );
        assert!(go(Format::Csv, &["phone"], input).is_err());
    }

    #[test]
    fn text_keeps_a_last_line_without_newline() {
        assert_eq!(
            go(Format::Text, &[], "a 10.1.2.3\nb a@example.org").unwrap(),
            "a [IP]\nb [EMAIL]"
        );
    }
}
