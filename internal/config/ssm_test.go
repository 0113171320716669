package config

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// ssmServer answers GetParameter in SSM's JSON 1.1 wire protocol on
// 127.0.0.1, so the real SDK client is exercised end to end (no SSM emulator
// installs on the build machines).
func ssmServer(t *testing.T, params map[string]string) *ssm.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("X-Amz-Target"); got != "AmazonSSM.GetParameter" {
			http.Error(w, "unexpected target "+got, http.StatusBadRequest)
			return
		}
		var in struct {
			Name           string
			WithDecryption bool
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if strings.Contains(in.Name, "/") && !strings.HasPrefix(in.Name, "/") && !strings.HasPrefix(in.Name, "arn:") {
			// AWS's answer to a path without its leading slash
			// (aws-sdk-js-v3#5005, localstack#11538): no hint of it.
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"__type": "ValidationException",
				"message": `Parameter name: can't be prefixed with "ssm" (case-insensitive). If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, numbers and the following 3 symbols .-_`})
			return
		}
		v, ok := params[in.Name]
		if !ok || !in.WithDecryption {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"__type": "ParameterNotFound", "message": in.Name})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"Parameter": map[string]any{"Name": in.Name, "Type": "SecureString", "Value": v, "Version": 1}})
	}))
	t.Cleanup(srv.Close)
	return ssm.New(ssm.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("k", "s", ""),
	})
}

func TestLoadFromSSM(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "configs", "example.json"))
	if err != nil {
		t.Fatal(err)
	}
	client := ssmServer(t, map[string]string{"/xrc/prod/config": string(doc), "/xrc/bad": `{"version":1,`})
	ctx := context.Background()

	c, err := Load(ctx, "ssm:///xrc/prod/config", client)
	if err != nil {
		t.Fatalf("Load from SSM: %v", err)
	}
	fromFile, err := Load(ctx, filepath.Join("..", "..", "configs", "example.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(c)
	b, _ := json.Marshal(fromFile)
	if string(a) != string(b) {
		t.Errorf("SSM and file loads differ:\n%s\n%s", a, b)
	}

	if _, err := Load(ctx, "ssm:///xrc/missing", client); err == nil || !strings.Contains(err.Error(), "ParameterNotFound") || !strings.Contains(err.Error(), "the xrc command's AWS_REGION") {
		t.Errorf("missing parameter: %v; want where to look", err)
	}
	// Two slashes: the name lacks its leading one.
	if _, err := Load(ctx, "ssm://xrc/prod/config", client); err == nil || !strings.Contains(err.Error(), "ssm:///xrc/prod/config") {
		t.Errorf("a path without its slash: %v; want the three-slash form suggested", err)
	}
	if _, err := Load(ctx, "ssm:///xrc/bad", client); err == nil || !strings.Contains(err.Error(), "malformed JSON") {
		t.Errorf("bad parameter: %v", err)
	}
	if _, err := Load(ctx, "ssm://", client); err == nil {
		t.Error("empty parameter name accepted")
	}
}
