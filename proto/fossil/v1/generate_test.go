package fossilv1_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// protocVersion is the header line that names the protoc that ran; it is
// not part of what is compared, so that another protoc 3.x release on a
// developer's machine does not fail the test.
var protocVersion = regexp.MustCompile(`(?m)^// \tprotoc +v.*$`)

// TestGeneratedCodeIsCurrent regenerates the code from the .proto files
// (proto/generate.sh, as `make proto` does) into a temporary directory and
// requires it to equal the committed code. It needs protoc: bash .ci/test
// installs it (apt-get install protobuf-compiler).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Fatal("protoc is missing: run the tests with bash .ci/test (make test), or apt-get install protobuf-compiler libprotobuf-dev")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("..", "..", "generate.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("proto/generate.sh: %v\n%s", err, b)
	}
	for _, f := range []string{"fossil/v1/fossil.pb.go", "fossil/v1/fossilv1connect/fossil.connect.go"} {
		want, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		if protocVersion.ReplaceAllString(string(got), "") != protocVersion.ReplaceAllString(string(want), "") {
			t.Errorf("proto/%s is not what proto/generate.sh makes of the .proto files: run make proto and commit the result", f)
		}
	}
}
