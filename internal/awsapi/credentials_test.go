package awsapi

import (
	"context"
	"testing"
	"time"
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
