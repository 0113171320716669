package source

import (
	"errors"
	"testing"

	"github.com/xrc-dev/xrc/internal/config"
)

// TestDirectClientsOfItsOwnRules: a worker reads the credentials of the
// direct regions its own rules deliver to, not those of another rule in
// its region, which its role may not read: it failed to start for a rule
// it does not serve.
func TestDirectClientsOfItsOwnRules(t *testing.T) {
	cfg := &config.Config{
		Settings: config.Settings{Regions: []config.Region{
			{Name: "us-east-1", Role: config.RoleSource},
			{Name: "eu-west-1", Role: config.RoleTarget},
			{Name: "cn-north-1", Role: config.RoleTarget, Direct: true, S3Credentials: "ssm:///xrc/cn"},
		}},
		Rules: []config.Rule{
			{ID: "logs", SourceRegion: "us-east-1", Destinations: []config.Destination{{Region: "eu-west-1"}}},
			{ID: "exports", SourceRegion: "us-east-1", Destinations: []config.Destination{{Region: "cn-north-1"}}},
		},
	}
	denied := func(r config.Region) (S3API, error) {
		return nil, errors.New("AccessDeniedException: ssm:GetParameter " + r.S3Credentials)
	}
	m, err := DirectClients(cfg, "us-east-1", []string{"logs"}, denied)
	if err != nil || len(m) != 0 {
		t.Errorf("logs' worker: %v, %d clients; want none and no error", err, len(m))
	}
	if _, err := DirectClients(cfg, "us-east-1", []string{"exports"}, denied); err == nil {
		t.Error("exports' worker started without its direct region's credentials")
	}
}
