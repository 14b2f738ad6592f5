package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/neouptime/neo-uptime-node/state"
)

// lambdaReserve is kept between the job's end and the invocation's
// deadline: the platform kills the sandbox half a second after SIGTERM.
const lambdaReserve = 2 * time.Second

// ScheduleEvent is what the template's EventBridge Scheduler sends: its
// Input, verbatim. Unknown fields (and classic EventBridge envelopes) are
// accepted and ignored.
type ScheduleEvent struct {
	Source string `json:"source,omitempty"`
	Region string `json:"region,omitempty"` // overrides -region for this run
}

// InvokeResult is the handler's answer, visible in the Lambda console.
type InvokeResult struct {
	Skipped     bool           `json:"skipped,omitempty"`
	LeaseOwner  string         `json:"lease_owner,omitempty"`
	Peers       int            `json:"peers"`
	Classes     map[string]int `json:"classes"`
	Reported    int            `json:"reported"`
	Undelivered int            `json:"undelivered"`
	DurationMS  float64        `json:"duration_ms"`
}

// lambdaMain serves invocations; the job and its clients are built once,
// at the first invocation, and reused while the sandbox stays warm.
func lambdaMain(ctx context.Context, cfg *Config, log *slog.Logger, gc *gcFloor) int {
	var (
		once   sync.Once
		job    *Job
		jobErr error
		mu     sync.Mutex
	)
	handler := func(ictx context.Context, raw json.RawMessage) (*InvokeResult, error) {
		mu.Lock() // one run per sandbox at a time
		defer mu.Unlock()
		once.Do(func() {
			if job, jobErr = buildJob(ctx, cfg, log); job != nil {
				job.GC = gc
			}
		})
		if jobErr != nil {
			return nil, fmt.Errorf("setting up: %w", jobErr)
		}
		var ev ScheduleEvent
		if len(raw) > 0 && string(raw) != "null" {
			if err := json.Unmarshal(raw, &ev); err != nil {
				log.Warn("ignoring undecodable event", keyErr, err)
			}
		}
		j := *job
		if ev.Region != "" {
			c := *cfg
			c.Region = ev.Region
			j.Cfg = &c
		}
		if dl, ok := ictx.Deadline(); ok {
			var cancel context.CancelFunc
			ictx, cancel = context.WithDeadline(ictx, dl.Add(-lambdaReserve))
			defer cancel()
		}
		rep, err := j.Run(ictx)
		j.closeIdle()
		if rep != nil {
			logSummary(log, rep)
			writeMetrics(j.Cfg, rep, err, log)
		}
		if err != nil {
			log.Error("run failed", keyErr, err)
			return nil, err
		}
		return &InvokeResult{Skipped: rep.Skipped, LeaseOwner: rep.LeaseOwner, Peers: len(rep.Peers), Classes: rep.Counts(),
			Reported: rep.Reported, Undelivered: rep.Undelivered, DurationMS: ms(rep.FinishedAt.Sub(rep.StartedAt))}, nil
	}
	lambda.StartWithOptions(handler, lambda.WithContext(ctx))
	return exitOK
}

// awsConfig loads the SDK configuration once per process.
func awsConfig(ctx context.Context) (aws.Config, error) {
	c, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return c, fmt.Errorf("loading AWS configuration: %w", err)
	}
	return c, nil
}

// fetchAPIKey resolves the API key from SSM or Secrets Manager when so
// configured. It runs once per process (Lambda: once per sandbox).
func fetchAPIKey(ctx context.Context, cfg *Config) error {
	if cfg.APIKeySSM == "" && cfg.APIKeySecretID == "" {
		return nil
	}
	ac, err := awsConfig(ctx)
	if err != nil {
		return err
	}
	if cfg.APIKeySSM != "" {
		out, err := ssm.NewFromConfig(ac).GetParameter(ctx, &ssm.GetParameterInput{Name: &cfg.APIKeySSM, WithDecryption: aws.Bool(true)})
		if err != nil {
			return fmt.Errorf("reading API key from SSM parameter %s: %w", cfg.APIKeySSM, err)
		}
		cfg.APIKey = strings.TrimSpace(aws.ToString(out.Parameter.Value))
		return nil
	}
	out, err := secretsmanager.NewFromConfig(ac).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &cfg.APIKeySecretID})
	if err != nil {
		return fmt.Errorf("reading API key from secret %s: %w", cfg.APIKeySecretID, err)
	}
	cfg.APIKey = strings.TrimSpace(aws.ToString(out.SecretString))
	return nil
}

// newDynamoStore builds the DynamoDB state store (endpoint override for
// emulators in tests).
func newDynamoStore(ctx context.Context, cfg *Config) (store, error) {
	ac, err := awsConfig(ctx)
	if err != nil {
		return nil, err
	}
	client := dynamodb.NewFromConfig(ac, func(o *dynamodb.Options) {
		if cfg.DynamoEndpnt != "" {
			o.BaseEndpoint = aws.String(cfg.DynamoEndpnt)
		}
	})
	return &state.DynamoStore{Client: client, Table: cfg.DynamoTable}, nil
}
