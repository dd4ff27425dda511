// SPDX-License-Identifier: GPL-2.0
/*
 * The power-fail signals' registration glue. linux/input.h and asm/nmi.h are
 * not part of the kernel's Rust bindings at all (no struct input_handler,
 * struct nmiaction, NMI_UNKNOWN or KEY_POWER there), so the two kernel
 * structures that must be handed to the kernel live here; everything they
 * do is to hand off to Rust (sys/powerfail_signals.rs) through one irq_work.
 *
 * Contexts: the input event arrives under the input device's event lock with
 * interrupts off, the NMI in NMI context. Neither may sleep or take a lock
 * the interrupted code may hold, so both only record which signal came and
 * queue the irq_work; its callback (hard-IRQ context) calls Rust, which only
 * sets atomics and wakes the writeback thread.
 */
#include <linux/input.h>
#include <linux/irq_work.h>
#include <linux/reboot.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <asm/nmi.h>

#include "helpers.h"

static void (*signalled)(void *ctx, unsigned int sources);
static void *signalled_ctx;
static atomic_t pending_sources;
static struct irq_work handoff;
static unsigned int armed;

static void handoff_fn(struct irq_work *work)
{
	unsigned int sources = atomic_xchg(&pending_sources, 0);
	/* Once: rapilog_powerfail_retarget() waits for this callback. */
	void *ctx = READ_ONCE(signalled_ctx);

	if (sources)
		signalled(ctx, sources);
}

static void raise_signal(unsigned int source)
{
	atomic_or(source, &pending_sources);
	irq_work_queue(&handoff);
}

/* --- NMI: any NMI no other handler claims ------------------------------- */

static int powerfail_nmi(unsigned int type, struct pt_regs *regs)
{
	raise_signal(RAPILOG_POWERFAIL_NMI);
	return NMI_HANDLED;
}

/* --- the ACPI "Power Button" input device --------------------------------- */

static void powerfail_input_event(struct input_handle *handle, unsigned int type,
				  unsigned int code, int value)
{
	if (type == EV_KEY && code == KEY_POWER && value == 1)
		raise_signal(RAPILOG_POWERFAIL_BUTTON);
}

static int powerfail_input_connect(struct input_handler *handler, struct input_dev *dev,
				   const struct input_device_id *id)
{
	struct input_handle *handle;
	int err;

	/* The ACPI button driver's device, not a keyboard's power key. */
	if (!dev->name || !strstr(dev->name, "Power Button"))
		return -ENODEV;
	handle = kzalloc(sizeof(*handle), GFP_KERNEL);
	if (!handle)
		return -ENOMEM;
	handle->dev = dev;
	handle->handler = handler;
	handle->name = "rapilog-powerfail";
	err = input_register_handle(handle);
	if (err)
		goto free;
	err = input_open_device(handle);
	if (err)
		goto unregister;
	pr_info("rapilog: power-fail signal armed on input device \"%s\"\n", dev->name);
	return 0;
unregister:
	input_unregister_handle(handle);
free:
	kfree(handle);
	return err;
}

static void powerfail_input_disconnect(struct input_handle *handle)
{
	input_close_device(handle);
	input_unregister_handle(handle);
	kfree(handle);
}

static const struct input_device_id powerfail_input_ids[] = {
	{
		.flags = INPUT_DEVICE_ID_MATCH_EVBIT | INPUT_DEVICE_ID_MATCH_KEYBIT,
		.evbit = { BIT_MASK(EV_KEY) },
		.keybit = { [BIT_WORD(KEY_POWER)] = BIT_MASK(KEY_POWER) },
	},
	{ },
};

static struct input_handler powerfail_input_handler = {
	.event = powerfail_input_event,
	.connect = powerfail_input_connect,
	.disconnect = powerfail_input_disconnect,
	.name = "rapilog-powerfail",
	.id_table = powerfail_input_ids,
};

/* --- arming ---------------------------------------------------------------- */

int rapilog_powerfail_arm(unsigned int sources, void (*fn)(void *ctx, unsigned int sources),
			  void *ctx)
{
	int err;

	if (armed)
		return -EBUSY;
	signalled = fn;
	signalled_ctx = ctx;
	atomic_set(&pending_sources, 0);
	init_irq_work(&handoff, handoff_fn);
	if (sources & RAPILOG_POWERFAIL_NMI) {
		err = register_nmi_handler(NMI_UNKNOWN, powerfail_nmi, 0, "rapilog-powerfail");
		if (err)
			return err;
	}
	if (sources & RAPILOG_POWERFAIL_BUTTON) {
		err = input_register_handler(&powerfail_input_handler);
		if (err) {
			if (sources & RAPILOG_POWERFAIL_NMI)
				unregister_nmi_handler(NMI_UNKNOWN, "rapilog-powerfail");
			return err;
		}
	}
	armed = sources;
	return 0;
}

void rapilog_powerfail_disarm(void)
{
	if (armed & RAPILOG_POWERFAIL_BUTTON)
		input_unregister_handler(&powerfail_input_handler);
	if (armed & RAPILOG_POWERFAIL_NMI)
		unregister_nmi_handler(NMI_UNKNOWN, "rapilog-powerfail");
	irq_work_sync(&handoff);
	armed = 0;
}

/*
 * Hands the signals to another context from now on: a callback already
 * running (with the old one) is waited for; one queued after the store
 * reads the new one. No signal is lost in between: the handlers stay
 * registered.
 */
void rapilog_powerfail_retarget(void *ctx)
{
	WRITE_ONCE(signalled_ctx, ctx);
	irq_work_sync(&handoff);
}

void rapilog_power_off(void)
{
	kernel_power_off();
}
