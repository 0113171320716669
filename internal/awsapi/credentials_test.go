package awsapi

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestRegionCredentialsExpire: a region's credentials are read again after
// credentialsTTL, so a rotated key or a renewed session token is used
// without a restart (read once, an expired token failed every copy until
// each task restarted).
func TestRegionCredentialsExpire(t *testing.T) {
	t.Setenv("XRC_T_ACCESS_KEY_ID", "AKIA1")
	t.Setenv("XRC_T_SECRET_ACCESS_KEY", "s1")
	c, err := regionCredentials{spec: "env:XRC_T"}.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessKeyID != "AKIA1" || !c.CanExpire || c.Expires.After(time.Now().Add(credentialsTTL)) || c.Expires.Before(time.Now()) {
		t.Errorf("credentials %s expiring %t at %v: want AKIA1, expiring within %v", c.AccessKeyID, c.CanExpire, c.Expires, credentialsTTL)
	}
	t.Setenv("XRC_T_SECRET_ACCESS_KEY", "")
	if _, err := (regionCredentials{spec: "env:XRC_T"}).Retrieve(context.Background()); err == nil {
		t.Error("credentials without a secret key accepted")
	}
}

// TestCredentialsKeptWhenRereadFails: credentials read before are kept a
// minute more when reading them again fails (SSM throttled), rather than
// failing every call to the region; none are made up when there were none
// (a key the store rejected is forgotten first).
func TestCredentialsKeptWhenRereadFails(t *testing.T) {
	c := regionCredentials{spec: "ssm:///xrc/s3"}
	throttled := errors.New("ThrottlingException")
	prev := aws.Credentials{AccessKeyID: "AKIA1", SecretAccessKey: "s1", CanExpire: true, Expires: time.Now().Add(-time.Second)}
	got, err := c.HandleFailToRefresh(context.Background(), prev, throttled)
	if err != nil || got.AccessKeyID != "AKIA1" || got.Expired() || got.Expires.After(time.Now().Add(staleFor)) {
		t.Errorf("kept %+v, %v; want AKIA1 for %v more", got, err, staleFor)
	}
	if _, err := c.HandleFailToRefresh(context.Background(), aws.Credentials{}, throttled); !errors.Is(err, throttled) {
		t.Errorf("with none read before: %v, want the read's error", err)
	}
}
