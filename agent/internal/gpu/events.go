package gpu

import (
	"context"
	"fmt"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// watchedEvents are the NVML events that mark a GPU unhealthy.
const watchedEvents = nvml.EventTypeXidCriticalError |
	nvml.EventTypeDoubleBitEccError

// applicationXIDs are XID codes that an application usually causes (for
// example a bad memory access, XID 13 or 31) rather than the hardware, so
// they do not make a GPU unhealthy.
var applicationXIDs = map[uint64]bool{
	13: true, 31: true, 43: true, 45: true, 68: true, 109: true,
}

// eventRetryPause is the pause after an unexpected error from an event
// wait, so a broken event set does not spin.
const eventRetryPause = time.Second

// watchEvents registers every GPU for XID and double-bit ECC events and
// handles them until ctx ends. A GPU that does not support events is
// skipped; its health still comes from sampling.
func (n *NVML) watchEvents(ctx context.Context) {
	set, ret := n.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		n.log.Warn("GPU events unavailable; health comes from sampling only",
			"error", fmt.Errorf("nvml.EventSetCreate: %w", ret))
		return
	}
	defer func() {
		if ret := set.Free(); ret != nvml.SUCCESS {
			n.log.Warn("free NVML event set", "error", ret)
		}
	}()

	if n.registerEvents(set) == 0 {
		return
	}
	waitMs := uint32(n.opts.EventWait / time.Millisecond)
	var lastErr nvml.Return
	for ctx.Err() == nil {
		data, ret := set.Wait(waitMs)
		switch ret {
		case nvml.SUCCESS:
			n.handleEvent(data)
		case nvml.ERROR_TIMEOUT:
			// No event within the wait; look at ctx and wait again.
		default:
			if ret != lastErr {
				n.log.Warn("wait for GPU events", "error", ret)
			}
			lastErr = ret
			sleepCtx(ctx, eventRetryPause)
		}
	}
}

// registerEvents returns the number of GPUs registered.
func (n *NVML) registerEvents(set nvml.EventSet) int {
	registered := 0
	for _, d := range n.devices {
		h := d.currentHandle()
		supported, ret := h.GetSupportedEventTypes()
		if ret != nvml.SUCCESS {
			d.log.Info("GPU events not supported", "error", ret)
			continue
		}
		types := supported & watchedEvents
		if types == 0 {
			continue
		}
		if ret := h.RegisterEvents(types, set); ret != nvml.SUCCESS {
			d.log.Warn("register GPU events", "error", ret)
			continue
		}
		registered++
	}
	return registered
}

func (n *NVML) handleEvent(e nvml.EventData) {
	reason, ok := eventFault(e)
	if !ok {
		n.log.Debug("GPU event ignored", "event_type", e.EventType,
			"xid", e.EventData)
		return
	}
	targets := n.devices
	if e.Device != nil {
		targets = n.eventDevice(e.Device)
	}
	for _, d := range targets {
		d.fault(reason)
	}
}

// eventFault returns the fault reason of an event, or false when the event
// is not a fault.
func eventFault(e nvml.EventData) (string, bool) {
	switch {
	case e.EventType&nvml.EventTypeXidCriticalError != 0:
		if applicationXIDs[e.EventData] {
			return "", false
		}
		return fmt.Sprintf(reasonXIDFormat, e.EventData), true
	case e.EventType&nvml.EventTypeDoubleBitEccError != 0:
		return reasonDoubleBitEvent, true
	}
	return "", false
}

// eventDevice finds the inventory entry of an event's device by UUID. An
// event whose device cannot be identified applies to every GPU, because a
// fault must not be lost.
func (n *NVML) eventDevice(h nvml.Device) []*device {
	uuid, ret := h.GetUUID()
	if ret == nvml.SUCCESS {
		for _, d := range n.devices {
			if d.info.UUID == uuid {
				return []*device{d}
			}
		}
	}
	n.log.Warn("GPU event from an unknown device; marking every GPU",
		"uuid", uuid, "error", ret)
	return n.devices
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
