// Package examples holds the test that runs the shell examples of
// README.md and docs/*.md against a real Fossil server, so that the
// documentation cannot drift from what Fossil does. It has no code of its
// own; the conventions an example must follow are these.
//
// # Which blocks run
//
// Every fenced block whose language is sh, shell or bash runs, in the order
// of the file, against one fresh server per file: a `fossil server` built
// from this tree, on a free loopback port, with a fresh database (so the
// examples of one file build on each other, as a reader pasting them in
// order would see). In the command text, localhost:8080 and 127.0.0.1:8080
// become the test server's address. The commands run with bash, with the
// built `fossil` first on PATH, DATABASE_URL naming the server's database,
// FOSSIL_ADDR its address, and TOKEN set to a placeholder (authentication is off). The server's SSE
// keepalive is 1s.
//
// A block is split into commands at newlines outside quotes (a backslash
// before the newline continues the command). The commands of one block run
// one after the other in one bash, so a variable one sets (id=$(curl …))
// is seen by the next; blocks do not share a shell.
//
// # What is checked
//
//   - A command that starts with curl must make one request, which must
//     answer 2xx, unless the comment at the end of its
//     line starts with a status code (`curl -X DELETE … # 204`, or
//     `# 409 …`), which it must then answer.
//   - Any other command must exit 0.
//   - curl gets -sS, and `curl -N` (a stream) is stopped after 2s, which
//     is not an error.
//   - When the block is followed (after blank lines only) by a fenced block
//     without a language or with json, text, http or output, that block is
//     what the LAST command of the sh block prints:
//     an `HTTP/1.1 NNN` first line (shown by curl -i) sets the expected
//     status and the header lines after it must be in the response with
//     those values; the body, when it is one JSON value, must equal the
//     output as JSON (same keys, same values, arrays of the same length);
//     otherwise each non-blank line must appear in the output in that
//     order, lines of JSON (also after "data: ") compared as JSON. A JSON
//     string "…" matches any value, a timestamp matches any timestamp, and
//     in text lines … matches any run of characters. A problem JSON body
//     (with "status") sets the expected status too.
//
// # Blocks that cannot run
//
// Put `<!-- example: skip REASON -->` on the line before the opening
// fence, with the reason (a load test, a command that runs until stopped).
// Keep these rare: prefer an example that can run.
package examples
