"""What the tests (tests/unit, tests/system) and the benchmark harness (bench/) share: one place for each helper.

- `servers`: `free_port` and `Server`, a real server process (hypercorn serving chat, or any command);
- `backends`: the configuration under test (SQLite, or PostgreSQL + Redis with `CHAT_TEST_BACKEND=postgres`),
  a database per work folder, rows read from outside the server;
- `app`: an application started in process (Quart's test client), API.md's error body, sign-up shortcuts;
- `http`: sign-up and sign-in over real HTTP (httpx);
- `ws`: websocket people, frames, a resuming client and a hand-written raw client;
- `tls`: websockets over HTTP/2 and HTTP/3 requests;
- `probes`: what /proc and `ss` tell about a process (RSS, CPU time, descriptors, connections), and polling;
- `browser`: Debian's Chromium, as Playwright launches it.
"""
