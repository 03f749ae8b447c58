import { registry } from "@web/core/registry";

/**
 * A newcomer's path: create a channel, test its connection, bind its
 * listings, read "why this quantity", open the dashboard and check its
 * figures. The Python side starts a local simulator on the port typed below
 * and seeds three acknowledged pushes for the dashboard.
 */
registry.category("web_tour.tours").add("stock_channel_sync_tour", {
    url: "/odoo/action-stock_channel_sync.action_sync_channel",
    steps: () => [
        { trigger: ".o_list_button_add", run: "click" },
        { trigger: ".o_field_widget[name=name] input", run: "edit Tour Shop" },
        // "Generic (Standard Webhooks)" is the default type
        { trigger: ".nav-link:contains(Connection)", run: "click" },
        {
            trigger: ".o_field_widget[name=base_url] input",
            run: "edit http://127.0.0.1:18791",
        },
        { trigger: ".o_form_button_save", run: "click" },
        { trigger: ".o_form_saved" },
        { trigger: "button[name=action_generate_signing_secret]", run: "click" },
        { trigger: ".o_form_saved" },
        { trigger: "button[name=action_test_connection]", run: "click" },
        { trigger: ".o_notification:contains(Connection OK)" },
        { trigger: "button[name=action_match_listings]", run: "click" },
        { trigger: ".o_notification:contains(1 binding)" },
        { trigger: "button[name=action_view_bindings]", run: "click" },
        { trigger: ".o_data_row:contains(TOUR-MUG) button[name=action_open_why]", run: "click" },
        { trigger: ".nav-link:contains(Why This Quantity)", run: "click" },
        { trigger: ".o_scs_steps td:contains(Published)" },
        { trigger: ".o_scs_steps td.text-end:contains(6)" },
        { trigger: ".o_scs_why td:contains(6)" },
        {
            trigger: "body",
            expectUnloadPage: true,
            run: () => {
                window.location.href =
                    "/odoo/action-stock_channel_sync.action_sync_dashboard";
            },
        },
        { trigger: ".o_field_widget[name=pushes]:contains(3)" },
        { trigger: ".o_field_widget[name=latency_p50_ms]:contains(200)" },
        { trigger: ".o_field_widget[name=dead_letters]:contains(0)" },
    ],
});
