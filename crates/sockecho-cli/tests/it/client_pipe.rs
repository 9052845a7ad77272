//! `sockecho client` with stdin not a terminal: a pipe tool like `nc`, binary-exact both ways at
//! once, half-closing at end of input and exiting 0 once the whole echo is back.

use crate::support::{
    RUN, Server, WAIT, assert_all_byte_values, assert_no_panic, pattern, run_with_input, sockecho,
    stderr_of, temp_dir, wait_child,
};

fn pipe_through(endpoint: &str, input: &[u8]) -> Vec<u8> {
    let out = run_with_input(&["client", endpoint], input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "client {endpoint}: {}",
        stderr_of(&out)
    );
    out.stdout
}

#[test]
fn tcp_pipe_echoes_megabytes_of_binary_data_exactly() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    // More than the socket buffers hold: only works if stdin and stdout are copied at once.
    let input = pattern(6 * 1024 * 1024, 21);
    assert_all_byte_values(&input);
    let output = pipe_through(&server.arg(), &input);
    assert_eq!(output.len(), input.len(), "output length");
    assert!(output == input, "output differs from input");
    server.wait_for(&format!("disconnected ({} bytes echoed", input.len()));
}

#[test]
fn unix_pipe_echoes_megabytes_of_binary_data_exactly() {
    let dir = temp_dir();
    let path = dir.path().join("p.sock");
    let endpoint = format!("unix:{}", path.display());
    let _server = Server::start(&[&endpoint], &[]);
    let input = pattern(6 * 1024 * 1024, 22);
    let output = pipe_through(&endpoint, &input);
    assert_eq!(output.len(), input.len(), "output length");
    assert!(output == input, "output differs from input");
}

#[test]
fn ipv6_pipe_echoes() {
    let server = Server::start(&["tcp://[::1]:0"], &[]);
    let output = pipe_through(&server.arg(), b"over v6\nno newline at the end");
    assert_eq!(output, b"over v6\nno newline at the end");
}

#[test]
fn empty_input_exits_zero_with_empty_output() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    assert_eq!(pipe_through(&server.arg(), b""), b"");
    server.wait_for("disconnected (0 bytes echoed");
}

#[test]
fn bare_host_port_and_host_names_reach_the_server() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let port = server.tcp().port();
    assert_eq!(
        pipe_through(&format!("127.0.0.1:{port}"), b"bare\n"),
        b"bare\n"
    );
    // localhost may resolve to ::1 first, where nothing listens: the client tries the next.
    assert_eq!(
        pipe_through(&format!("tcp://localhost:{port}"), b"named\n"),
        b"named\n"
    );
    assert_eq!(
        pipe_through(&format!("localhost:{port}"), b"named bare\n"),
        b"named bare\n"
    );
}

#[test]
fn the_client_ends_when_the_echo_is_complete_not_before() {
    // A client that exited at end of input without waiting for the echo would print less than
    // it sent; sizes on both sides of buffer boundaries.
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    for len in [1, 1000, 65_536, 1_000_001] {
        let input = pattern(len, len as u64);
        let output = pipe_through(&server.arg(), &input);
        assert!(output == input, "{len} bytes: got {} back", output.len());
    }
}

/// `sockecho client unix:PATH < blob > copy`, as the README shows: regular files, not pipes.
#[test]
fn files_on_stdin_and_stdout_are_copied_exactly() {
    let dir = temp_dir();
    let endpoint = format!("unix:{}", dir.path().join("f.sock").display());
    let _server = Server::start(&[&endpoint], &[]);
    let blob = dir.path().join("blob");
    let copy = dir.path().join("copy");
    let input = pattern(3 * 1024 * 1024 + 7, 23);
    std::fs::write(&blob, &input).expect("write blob");
    let mut client = sockecho(["client", &endpoint])
        .stdin(std::fs::File::open(&blob).expect("open blob"))
        .stdout(std::fs::File::create(&copy).expect("create copy"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn client");
    let status = wait_child(&mut client, RUN).expect("client finishes the copy");
    assert!(status.success(), "client exited {status}");
    let output = std::fs::read(&copy).expect("read copy");
    assert_eq!(output.len(), input.len(), "copy length");
    assert!(output == input, "copy differs from blob");
}

/// Runs `sockecho client ENDPOINT` as a pipe tool, sends `first`, waits for its echo, kills
/// the server, sends `second` and closes stdin; returns the client's exit code, stdout, stderr.
fn server_goes_away_mid_session(mut server: Server) -> (Option<i32>, String, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    let mut client = sockecho(["client", &server.arg()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let mut stdin = client.stdin.take().expect("stdin");
    let stdout = client.stdout.take().expect("stdout");
    let mut stderr = client.stderr.take().expect("stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("client stdout");
            all.push_str(&line);
            all.push('\n');
            let _ = lines_tx.send(line);
        }
        all
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    stdin.write_all(b"first\n").expect("write");
    let echoed = lines.recv_timeout(WAIT).expect("first echo");
    assert_eq!(echoed, "first");
    server.kill();
    // The client may already have noticed and exited; a failed write is fine then.
    let _ = stdin.write_all(b"second\n");
    drop(stdin);
    let Some(status) = wait_child(&mut client, WAIT) else {
        let _ = client.kill();
        panic!("client still running after the server went away");
    };
    let out = reader.join().expect("stdout reader");
    let err = errors.join().expect("stderr reader");
    assert_no_panic(&err);
    (status.code(), out, err)
}

/// The echo of `second` never comes back, so the client must not report success, and its
/// error names the endpoint it lost.
fn assert_server_going_away_is_exit_code_1(server: Server, endpoint: &str) {
    let (code, out, err) = server_goes_away_mid_session(server);
    assert_eq!(out, "first\n");
    assert_eq!(
        code,
        Some(1),
        "client exited {code:?} although `second` was never echoed; stderr: {err:?}"
    );
    assert!(
        err.contains(endpoint),
        "error does not name the endpoint: {err:?}"
    );
}

#[test]
fn tcp_server_going_away_before_the_echo_is_complete_is_exit_code_1() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let endpoint = server.arg();
    assert_server_going_away_is_exit_code_1(server, &endpoint);
}

#[test]
fn unix_server_going_away_before_the_echo_is_complete_is_exit_code_1() {
    let dir = temp_dir();
    let endpoint = format!("unix:{}", dir.path().join("gone.sock").display());
    let server = Server::start(&[&endpoint], &[]);
    assert_server_going_away_is_exit_code_1(server, &endpoint);
}
