//! A private Xvfb for the run: a free display chosen by the server (`-displayfd`),
//! stopped when this value is dropped or the benchmark exits (the wrapper shell kills it
//! when its stdin closes).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result};

pub struct Xvfb {
    pub display: String,
    child: Child,
    stdin: Option<ChildStdin>,
    _stdout: BufReader<ChildStdout>,
}

impl Xvfb {
    pub fn start(width: u16, height: u16) -> Result<Self> {
        let script = format!(
            "Xvfb -displayfd 1 -screen 0 {width}x{height}x24 -nolisten tcp -noreset & x=$!; read _; kill $x; wait $x"
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start Xvfb (install the Debian package xvfb)")?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        // Kept open while the server runs: it must never write into a closed pipe.
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        stdout.read_line(&mut line)?;
        let n: u32 = line.trim().parse().with_context(|| format!("Xvfb did not start (printed {line:?})"))?;
        Ok(Xvfb { display: format!(":{n}"), child, stdin, _stdout: stdout })
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
