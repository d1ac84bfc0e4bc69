package cli

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/YoungBoyGod/remotegpu/coordinator/internal/fleet"
)

// lifetimeOptions are the serve flags for allocations on hosts that went
// down.
type lifetimeOptions struct {
	lostGracePeriod  time.Duration
	lostReleaseAfter time.Duration
}

func (o *lifetimeOptions) addFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.lostGracePeriod, "lost-grace-period",
		fleet.DefaultLostGracePeriod,
		"time a host may be unhealthy or stopped before its active allocations "+
			"are marked lost; they keep their resources and turn active again "+
			"when the host returns")
	fs.DurationVar(&o.lostReleaseAfter, "lost-release-after", 0,
		"time after which a lost allocation is released automatically, counted "+
			"from when it was marked lost; 0 keeps it until an operator releases it")
}

func (o *lifetimeOptions) validate() error {
	if o.lostGracePeriod <= 0 {
		return fmt.Errorf("invalid --lost-grace-period %s: must be positive, "+
			"e.g. 1m", o.lostGracePeriod)
	}
	if o.lostReleaseAfter < 0 {
		return fmt.Errorf("invalid --lost-release-after %s: must be positive, "+
			"or 0 to keep lost allocations until released", o.lostReleaseAfter)
	}
	return nil
}
