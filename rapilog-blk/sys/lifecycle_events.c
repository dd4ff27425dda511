// SPDX-License-Identifier: GPL-2.0
/*
 * Registration glue of the machine-lifecycle notifiers: the reboot notifier
 * (reboot, halt, power-off and a non-crash `kexec -e` all call it, from the
 * task that asked for the stop, before devices are shut down) and the PM
 * notifier (suspend and hibernation, before tasks are frozen and after they
 * are thawed). Both chains are blocking: the callbacks run in process
 * context and may sleep and do disk I/O. struct notifier_block and the
 * PM_ and SYS_ event codes are not part of the kernel's Rust bindings in a
 * usable form (the callback field is a function pointer the bindings leave
 * opaque), so they live here; everything the callbacks do is in Rust
 * (sys/lifecycle_events.rs).
 */
#include <linux/notifier.h>
#include <linux/reboot.h>
#include <linux/suspend.h>

#include "helpers.h"

static int (*stop_fn)(void *ctx, unsigned int how);
static int (*pm_fn)(void *ctx, unsigned int event);
static void *events_ctx;
static bool registered;

static int reboot_event(struct notifier_block *nb, unsigned long code, void *cmd)
{
	unsigned int how;

	switch (code) {
	case SYS_RESTART:
		how = RAPILOG_STOP_RESTART;
		break;
	case SYS_HALT:
		how = RAPILOG_STOP_HALT;
		break;
	case SYS_POWER_OFF:
		how = RAPILOG_STOP_POWER_OFF;
		break;
	default:
		return NOTIFY_DONE;
	}
	stop_fn(events_ctx, how);
	/* A failed drain is reported by Rust; the machine goes down anyway. */
	return NOTIFY_DONE;
}

static int pm_event(struct notifier_block *nb, unsigned long code, void *unused)
{
	unsigned int event;
	int err;

	switch (code) {
	case PM_HIBERNATION_PREPARE:
		event = RAPILOG_PM_HIBERNATE_PREPARE;
		break;
	case PM_SUSPEND_PREPARE:
		event = RAPILOG_PM_SUSPEND_PREPARE;
		break;
	case PM_POST_HIBERNATION:
	case PM_POST_SUSPEND:
	case PM_POST_RESTORE:
		event = RAPILOG_PM_RESUMED;
		break;
	default:
		return NOTIFY_DONE;
	}
	err = pm_fn(events_ctx, event);
	/* An error in a *_PREPARE callback aborts the suspend or hibernation. */
	return err ? notifier_from_errno(err) : NOTIFY_OK;
}

static struct notifier_block reboot_nb = {
	.notifier_call = reboot_event,
	/* Before other reboot notifiers (a stacked driver flushing onto us). */
	.priority = 0,
};

static struct notifier_block pm_nb = {
	.notifier_call = pm_event,
};

int rapilog_lifecycle_register(int (*stop)(void *ctx, unsigned int how),
			       int (*pm)(void *ctx, unsigned int event), void *ctx)
{
	int err;

	if (registered)
		return -EBUSY;
	stop_fn = stop;
	pm_fn = pm;
	events_ctx = ctx;
	err = register_reboot_notifier(&reboot_nb);
	if (err)
		return err;
	err = register_pm_notifier(&pm_nb);
	if (err) {
		unregister_reboot_notifier(&reboot_nb);
		return err;
	}
	registered = true;
	return 0;
}

void rapilog_lifecycle_unregister(void)
{
	if (!registered)
		return;
	/* Both wait for a callback in flight (the chains' rwsems). */
	unregister_pm_notifier(&pm_nb);
	unregister_reboot_notifier(&reboot_nb);
	registered = false;
}
