package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
	"github.com/neouptime/neo-uptime-node/state"
	"github.com/neouptime/neo-uptime-node/state/dynalitetest"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// RequireRIEEnv=1 turns a missing Lambda emulator into a failure (CI).
const RequireRIEEnv = "NEO_REQUIRE_LAMBDA_RIE"

func rieBinary() string {
	if p := os.Getenv("NEO_LAMBDA_RIE"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", ".cache", "bin", "aws-lambda-rie")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// historyItem reads one peer's history straight from the table.
func historyItem(t *testing.T, c *dynamodb.Client, table string, id int) state.History {
	t.Helper()
	out, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &table, ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "hist"}, "sk": &types.AttributeValueMemberS{Value: fmt.Sprint(id)}}})
	if err != nil || out.Item == nil {
		t.Fatalf("history of peer %d not in the table: %v", id, err)
	}
	var h state.History
	if err := json.Unmarshal([]byte(out.Item["body"].(*types.AttributeValueMemberS).Value), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestLambda_UnderRuntimeEmulator runs the real bootstrap under the Lambda
// Runtime Interface Emulator, invokes it with the schedule's payload, and
// checks the backend got the reports and DynamoDB the state; a second
// invocation must find the first's history and a released lease.
func TestLambda_UnderRuntimeEmulator(t *testing.T) {
	rie := rieBinary()
	if rie == "" {
		if os.Getenv(RequireRIEEnv) == "1" {
			t.Fatalf("%s=1 but aws-lambda-rie is not installed (make deps)", RequireRIEEnv)
		}
		t.Skip("aws-lambda-rie not installed: run make deps")
	}
	ddb, endpoint := dynalitetest.Start(t)
	table := dynalitetest.CreateTable(t, ddb)
	const netSecret = "LAMBDA-NETSECRET-41c7"
	node := startFake(t, &easytiertest.Fake{NetworkName: "lambda-net", NetworkSecret: netSecret, Foreign: []string{"x"}, Encrypt: "aes-gcm"})
	be := &testBackend{peers: []map[string]any{peer(1, node.TCPURL(), "lambda-net", netSecret), peer(2, node.WSURL(), "lambda-net", netSecret)}}
	srv, open := startCountingConns(be) // open: the backend's open connections
	defer srv.Close()

	dir := t.TempDir()
	bootstrap := filepath.Join(dir, "bootstrap")
	if out, err := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bootstrap, ".").CombinedOutput(); err != nil {
		t.Fatalf("building bootstrap: %v\n%s", err, out)
	}
	rieAddr, apiAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", rieAddr, "--runtime-api-address", apiAddr, bootstrap)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"AWS_LAMBDA_FUNCTION_TIMEOUT=20", "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"BACKEND_BASE_URL=" + srv.URL + "/api/", "API_KEY=test-key-9b1",
		"NEO_STATE=dynamodb", "NEO_DYNAMODB_TABLE=" + table, "NEO_DYNAMODB_ENDPOINT=" + endpoint,
		"NEO_DEADLINE=10s", "NEO_LOG_FORMAT=json", "NEO_SAMPLES=2",
	}
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	invoke := func() map[string]any {
		t.Helper()
		url := "http://" + rieAddr + "/2015-03-31/functions/function/invocations"
		var resp *http.Response
		var err error
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err = http.Post(url, "application/json", strings.NewReader(`{"source":"neo-uptime-node.schedule"}`))
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("invoking: %v\n%s", err, logs.String())
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var out map[string]any
		// The emulator answers 200 even for function errors: read the body.
		if err := json.Unmarshal(body, &out); err != nil || out["errorMessage"] != nil {
			t.Fatalf("invocation answered %s (%v)\nlogs:\n%s", body, err, logs.String())
		}
		return out
	}

	first := invoke()
	if first["reported"] != float64(2) || first["skipped"] == true {
		t.Fatalf("first invocation = %v, want 2 reports", first)
	}
	got := be.reports()
	if len(got[1]) != 1 || got[1][0].Status != "online" || got[1][0].PeerCount != 1 || len(got[2]) != 1 {
		t.Errorf("backend reports after the first invocation = %v", got)
	}
	if h := historyItem(t, ddb, table, 1); h.ConsecOK != 1 || h.Reported != "online" {
		t.Errorf("history after the first invocation = %+v", h)
	}
	// The sandbox closed its backend connections before it answered: the
	// next invocation is too far off to reuse them.
	for deadline := time.Now().Add(2 * time.Second); open.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Errorf("%d backend connections left open after the invocation", n)
	}

	second := invoke()
	if second["reported"] != float64(2) || second["skipped"] == true {
		t.Fatalf("second invocation = %v, want 2 reports (lease released by the first)", second)
	}
	if h := historyItem(t, ddb, table, 1); h.ConsecOK != 2 {
		t.Errorf("history after the second invocation = %+v, want ConsecOK 2 (built on the first's)", h)
	}
	if !strings.Contains(logs.String(), `"_aws"`) || !strings.Contains(logs.String(), "NeoUptimeNode") {
		t.Errorf("no CloudWatch EMF metrics line in the logs:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "test-key-9b1") || strings.Contains(logs.String(), netSecret) {
		t.Error("a secret appears in the Lambda logs")
	}
	// Nor anywhere in the DynamoDB state.
	scan, err := ddb.Scan(context.Background(), &dynamodb.ScanInput{TableName: &table})
	if err != nil || len(scan.Items) == 0 {
		t.Fatalf("scanning the state table: %d items, %v", len(scan.Items), err)
	}
	dump := fmt.Sprintf("%#v", scan.Items)
	for _, it := range scan.Items {
		for _, v := range it {
			if sv, ok := v.(*types.AttributeValueMemberS); ok {
				dump += sv.Value
			}
		}
	}
	if strings.Contains(dump, netSecret) || strings.Contains(dump, "test-key-9b1") {
		t.Error("a secret is stored in the DynamoDB state")
	}
	if !strings.Contains(dump, "sealed_secret") {
		t.Error("no sealed peer cache in DynamoDB: the check proves nothing")
	}
}
