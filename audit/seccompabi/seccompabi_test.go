package seccompabi

import "testing"

func TestCombine(t *testing.T) {
	for _, c := range []struct {
		name string
		rets []uint32
		want uint32
	}{
		{"none allows", nil, RetAllow},
		{"kill process beats all", []uint32{RetAllow, RetKillThread, RetKillProcess, Errno(1)}, RetKillProcess},
		{"kill thread beats trap", []uint32{RetTrap | 3, RetKillThread}, RetKillThread},
		{"trap beats errno", []uint32{Errno(38), RetTrap | 7}, RetTrap | 7},
		{"errno beats notif", []uint32{RetUserNotif, Errno(1)}, Errno(1)},
		{"notif beats trace", []uint32{RetTrace | 1, RetUserNotif}, RetUserNotif},
		{"trace beats log", []uint32{RetLog, RetTrace | 2}, RetTrace | 2},
		{"log beats allow", []uint32{RetAllow, RetLog}, RetLog},
		// Load order: the last loaded runs first, so its data wins a tie.
		{"tie: data of the filter that ran first", []uint32{Errno(1), Errno(38)}, Errno(38)},
		{"unknown action is kill process", []uint32{RetAllow, 0x12340000}, 0x12340000},
	} {
		if got := Combine(c.rets); got != c.want {
			t.Errorf("%s: Combine(%#x) = %s (%#x), want %s", c.name, c.rets, String(got), got, String(c.want))
		}
	}
}
