//! Reading JSON Lines input and showing progress, for the commands that
//! stream files.

use std::{
    fs::File,
    io::{BufRead, BufReader, IsTerminal},
    time::Duration,
};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

/// Opens FILE, or standard input for `-` or no file; with its size when known.
pub fn open(file: Option<&str>) -> anyhow::Result<(Box<dyn BufRead + Send>, Option<u64>)> {
    match file {
        None | Some("-") => Ok((Box::new(BufReader::new(std::io::stdin())), None)),
        Some(path) => {
            let f = File::open(path).with_context(|| format!("cannot open {path}"))?;
            let size = f.metadata().ok().map(|m| m.len());
            Ok((Box::new(BufReader::with_capacity(1 << 16, f)), size))
        }
    }
}

/// Progress for a long command: a bar with rate and ETA on a terminal,
/// a plain line every few seconds otherwise (logs, CI).
pub struct Progress {
    bar: Option<ProgressBar>,
    last_line: std::time::Instant,
}

const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// `total` in bytes, when the input's size is known.
    pub fn new(total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total).with_style(
                    ProgressStyle::with_template(
                        "{bar:40} {percent}% {msg} [{elapsed_precise}, eta {eta}]",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
                None => ProgressBar::new_spinner(),
            };
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            last_line: std::time::Instant::now(),
        }
    }

    /// Moves to `position` bytes and shows `message`.
    pub fn update(&mut self, position: u64, message: impl FnOnce() -> String) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(position);
                bar.set_message(message());
            }
            None if self.last_line.elapsed() >= PLAIN_EVERY => {
                eprintln!("{}", message());
                self.last_line = std::time::Instant::now();
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
