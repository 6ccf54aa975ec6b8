package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gatehouse/internal/config"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestDocsExamplesParse: every YAML example in the README, docs/ and
// deploy/ is a config gatehouse accepts. Paths on the writer's machine
// (certificate files, folders) and unset variables are allowed to be
// missing here; nothing else may be wrong.
func TestDocsExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md")
	n := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllStringSubmatch(string(src), -1) {
			n++
			checkExample(t, f+" example "+string(rune('1'+i)), []byte(m[1]))
		}
	}
	deploy, _ := os.ReadFile("../deploy/gatehouse.yaml")
	checkExample(t, "deploy/gatehouse.yaml", deploy)
	if n < 5 {
		t.Fatalf("found only %d examples", n)
	}
}

func checkExample(t *testing.T, name string, src []byte) {
	t.Helper()
	_, err := config.Parse(name, src)
	if err == nil {
		return
	}
	for _, e := range err.(config.ErrorList) {
		switch {
		case strings.Contains(e.Msg, "cannot read"), strings.Contains(e.Msg, "is not a readable folder"),
			strings.Contains(e.Msg, "environment variable"), strings.Contains(e.Msg, "no such file"):
		default:
			t.Errorf("%v", e)
		}
	}
}
