package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/neouptime/neo-uptime-node/probe/easytier/easytiertest"
)

// startMoto runs moto's server (PyPI moto[server], in the venv) on
// loopback: it emulates SSM and Secrets Manager.
func startMoto(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(filepath.Dir(file), "..", "..", ".venv", "bin", "moto_server")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv(easytiertest.RequireEnv) == "1" {
			t.Fatalf("moto_server not installed (make deps)")
		}
		t.Skip("moto_server not installed: run make deps")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-H", host, "-p", port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatal("moto_server did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAPIKey_FromSSMAndSecretsManager: the key is fetched at start from an
// SSM SecureString or a Secrets Manager secret and reaches the backend.
func TestAPIKey_FromSSMAndSecretsManager(t *testing.T) {
	endpoint := startMoto(t)
	ctx := context.Background()
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")
	const ssmKey, smKey = "key-from-ssm-5e1", "key-from-secrets-manager-77a"
	sc := ssm.New(ssm.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(endpoint)})
	if _, err := sc.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/neo-uptime/api-key"), Value: aws.String(ssmKey), Type: ssmtypes.ParameterTypeSecureString}); err != nil {
		t.Fatal(err)
	}
	sm := secretsmanager.New(secretsmanager.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(endpoint)})
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("neo-uptime-api-key"), SecretString: aws.String(smKey)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag, value, key string
	}{
		{"-api-key-ssm-parameter", "/neo-uptime/api-key", ssmKey},
		{"-api-key-secret-id", "neo-uptime-api-key", smKey},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			var gotKey []string
			be := &keyRecorder{keys: &gotKey}
			srv := httptest.NewServer(be)
			defer srv.Close()
			env := map[string]string{"BACKEND_BASE_URL": srv.URL, "DATABASE_PATH": filepath.Join(t.TempDir(), "s.db"),
				"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
			res := runBinary(t, env, tc.flag, tc.value, "-deadline", "4s", "-report-reserve", "1s")
			if res.code != exitOK {
				t.Fatalf("exit %d\n%s", res.code, res.stderr)
			}
			be.mu.Lock()
			defer be.mu.Unlock()
			if len(gotKey) == 0 || gotKey[0] != tc.key {
				t.Errorf("backend saw x-api-key %v, want %q", gotKey, tc.key)
			}
			if strings.Contains(res.stdout+res.stderr, tc.key) {
				t.Error("the API key appears in the output")
			}
		})
	}
	// A missing parameter is a clear setup failure.
	res := runBinary(t, map[string]string{"BACKEND_BASE_URL": "http://127.0.0.254:1", "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
		"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}, "-api-key-ssm-parameter", "/nope")
	if res.code != exitFailed || !strings.Contains(res.stderr, "reading API key from SSM parameter /nope") {
		t.Errorf("missing parameter: exit %d\n%s", res.code, res.stderr)
	}
}

// keyRecorder records the x-api-key of each request and serves an empty list.
type keyRecorder struct {
	mu   sync.Mutex
	keys *[]string
}

func (k *keyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	*k.keys = append(*k.keys, r.Header.Get("x-api-key"))
	k.mu.Unlock()
	fmt.Fprint(w, `{"code":200,"message":"Success","data":{"peers":[]}}`)
}
