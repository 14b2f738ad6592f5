// Package dynalitetest runs the dynalite DynamoDB emulator (npm) on
// loopback for tests, and creates tables shaped like template.yaml's.
package dynalitetest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// RequireDynamoEnv=1 turns a missing DynamoDB emulator into a failure (CI).
const RequireDynamoEnv = "NEO_REQUIRE_DYNAMO"

// dynaliteScript finds dynalite's cli.js: $NEO_DYNALITE, or the copy
// `make deps` installs under .cache/.
func dynaliteScript() string {
	if p := os.Getenv("NEO_DYNALITE"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", ".cache", "dynalite", "node_modules", "dynalite", "cli.js")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// Start starts dynalite on loopback; it returns a client and the endpoint.
func Start(t testing.TB) (*dynamodb.Client, string) {
	t.Helper()
	script := dynaliteScript()
	if script == "" {
		if os.Getenv(RequireDynamoEnv) == "1" {
			t.Fatalf("%s=1 but dynalite is not installed (make deps, or set NEO_DYNALITE)", RequireDynamoEnv)
		}
		t.Skip("dynalite not installed: run make deps")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("node", script, "--host", "127.0.0.1", "--port", fmt.Sprint(port))
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dynalite: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dynalite did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	}), endpoint
}

var tableSeq atomic.Int64

// CreateTable makes a table shaped like the template's.
func CreateTable(t testing.TB, c *dynamodb.Client) string {
	t.Helper()
	name := fmt.Sprintf("neo-test-%d", tableSeq.Add(1))
	_, err := c.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName: &name,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("creating table: %v", err)
	}
	w := dynamodb.NewTableExistsWaiter(c, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 50 * time.Millisecond
		o.MaxDelay = 200 * time.Millisecond
	})
	if err := w.Wait(context.Background(), &dynamodb.DescribeTableInput{TableName: &name}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return name
}
