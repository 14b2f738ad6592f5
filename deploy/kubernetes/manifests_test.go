// Package kubernetes holds the CronJob manifests; this test decodes them
// strictly into the Kubernetes API types and checks the scheduling and
// security settings the README promises.
package kubernetes

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// decodeStrict fails on any field the API type does not have.
func decodeStrict(t *testing.T, doc []byte, v any) {
	t.Helper()
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("strict decode: %v", err)
	}
}

func TestManifests_StrictDecodeAndPolicy(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests")
	}
	cronJobs := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(b), "\n---\n") {
			var meta struct{ Kind string }
			decodeStrict(t, []byte(doc), &map[string]any{})
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatal(err)
			}
			switch meta.Kind {
			case "CronJob":
				var cj batchv1.CronJob
				decodeStrict(t, []byte(doc), &cj)
				checkCronJob(t, f, &cj)
				cronJobs++
			case "PersistentVolumeClaim":
				decodeStrict(t, []byte(doc), &corev1.PersistentVolumeClaim{})
			case "ServiceAccount":
				decodeStrict(t, []byte(doc), &corev1.ServiceAccount{})
			default:
				t.Errorf("%s: unexpected kind %q", f, meta.Kind)
			}
		}
	}
	if cronJobs != 2 {
		t.Errorf("found %d CronJobs, want 2 (file state and DynamoDB)", cronJobs)
	}
}

func checkCronJob(t *testing.T, file string, cj *batchv1.CronJob) {
	t.Helper()
	s, js := cj.Spec, cj.Spec.JobTemplate.Spec
	pod := js.Template.Spec
	bad := func(format string, a ...any) { t.Errorf(file+": "+format, a...) }
	if s.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		bad("concurrencyPolicy = %q, want Forbid", s.ConcurrencyPolicy)
	}
	if s.StartingDeadlineSeconds == nil || *s.StartingDeadlineSeconds < 10 {
		bad("startingDeadlineSeconds must be >= 10")
	}
	if js.BackoffLimit == nil || *js.BackoffLimit != 0 {
		bad("backoffLimit must be 0 (no retries of a failed run)")
	}
	if js.ActiveDeadlineSeconds == nil || *js.ActiveDeadlineSeconds >= 60 {
		bad("activeDeadlineSeconds must be below the 60s period")
	}
	if js.TTLSecondsAfterFinished == nil || s.SuccessfulJobsHistoryLimit == nil || s.TimeZone == nil {
		bad("finished jobs must be cleaned up and the time zone set")
	}
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		bad("restartPolicy = %q, want Never", pod.RestartPolicy)
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("pod must run as non-root with the RuntimeDefault seccomp profile")
	}
	if len(pod.Containers) != 1 {
		bad("want one container")
		return
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		bad("container must have a read-only root, no privilege escalation and drop ALL capabilities")
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Memory().IsZero() {
		bad("memory requests and limits must be set")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if k := env["API_KEY"]; k.ValueFrom == nil || k.ValueFrom.SecretKeyRef == nil || k.Value != "" {
		bad("API_KEY must come from a Secret")
	}
	if env["GOMEMLIMIT"].Value == "" || env["BACKEND_BASE_URL"].Value == "" {
		bad("GOMEMLIMIT and BACKEND_BASE_URL must be set")
	}
	usesDynamo := strings.Contains(strings.Join(c.Args, " "), "-state dynamodb")
	hasPVC := len(pod.Volumes) == 1 && pod.Volumes[0].PersistentVolumeClaim != nil
	if usesDynamo == hasPVC {
		bad("state must be either DynamoDB or a PersistentVolumeClaim (dynamodb %v, pvc %v)", usesDynamo, hasPVC)
	}
}
